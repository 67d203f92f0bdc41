"""Series per minute, hour and day, kept longer than records, in rollups.db.

    series  (resolution, bucket, ifindex, direction, protocol) → octets, packets, flows
    hosts   (resolution, bucket, address) → octets, packets, flows (hours)

A flow counts in the bucket of its start, both directions together
(octets + reverse_octets).  The rows are summed by SQLite from the rows a
flush just wrote (INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE): no
Python per record.  A host is both ends of a flow.  The host rows of the
hours that still have records are complete, so a top-hosts query answers
whole hours from here (a few thousand rows an hour instead of every
record); older buckets keep their TOP_HOSTS busiest hosts only (the rest
of the traffic is in series).  Retention: minutes RETENTION_S[60], hours and days longer; if
the file still passes its share of the budget, the oldest buckets of the
finest resolution go first.

rollups.db is written in the same turn as the segment but is its own file:
a kill -9 between the two commits can leave the last flush counted in the
segment and not here (never the other way round).
"""

MINUTE, HOUR, DAY = 60, 3600, 86400
RESOLUTIONS = (MINUTE, HOUR, DAY)
HOST_RESOLUTIONS = (HOUR,)   # a day's top hosts: its hours summed
# minutes: the last three days train the anomaly models at a start (store/service.py)
RETENTION_S = {MINUTE: 4 * DAY, HOUR: 92 * DAY, DAY: 3 * 366 * DAY}
TOP_HOSTS = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    resolution INTEGER NOT NULL, bucket INTEGER NOT NULL, ifindex INTEGER NOT NULL,
    direction INTEGER NOT NULL, protocol INTEGER NOT NULL,
    octets INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    PRIMARY KEY (resolution, bucket, ifindex, direction, protocol)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hosts (
    resolution INTEGER NOT NULL, bucket INTEGER NOT NULL, address BLOB NOT NULL,
    octets INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    PRIMARY KEY (resolution, bucket, address)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS interfaces (ifindex INTEGER PRIMARY KEY, name TEXT NOT NULL);
"""

_SUMS = ("ON CONFLICT DO UPDATE SET octets = octets + excluded.octets, "
         "packets = packets + excluded.packets, flows = flows + excluded.flows")

# a flush's records are read twice (series, hosts) into small temporary
# tables, and each resolution is summed from those; "+src": grouping must
# not walk the address index (a random read per record of the segment)
STAGE = """
CREATE TEMP TABLE IF NOT EXISTS new_series (bucket, ifindex, direction, protocol, octets, packets,
                                            flows);
CREATE TEMP TABLE IF NOT EXISTS new_hosts (bucket, address, octets, packets, flows);
DELETE FROM temp.new_series;
DELETE FROM temp.new_hosts;
"""
STAGE_SERIES = (
    "INSERT INTO temp.new_series SELECT start_ms / 60000 * 60, ifindex, direction, protocol, "
    "sum(octets + reverse_octets), sum(packets + reverse_packets), count(*) FROM main.flows "
    "WHERE rowid > :after AND rowid <= :last GROUP BY 1, 2, 3, 4")
STAGE_HOSTS = (
    "INSERT INTO temp.new_hosts SELECT start_ms / 3600000 * 3600, +{end}, "
    "sum(octets + reverse_octets), sum(packets + reverse_packets), count(*) FROM main.flows "
    "WHERE rowid > :after AND rowid <= :last{condition} GROUP BY 1, 2")
ADD_SERIES = (
    "INSERT INTO r.series SELECT :resolution, bucket / :resolution * :resolution, ifindex, "
    "direction, protocol, sum(octets), sum(packets), sum(flows) FROM temp.new_series "
    "WHERE true GROUP BY 2, 3, 4, 5 " + _SUMS)
ADD_HOSTS = (
    "INSERT INTO r.hosts SELECT :resolution, bucket / :resolution * :resolution, address, "
    "sum(octets), sum(packets), sum(flows) FROM temp.new_hosts WHERE true GROUP BY 2, 3 "
    + _SUMS)

PRUNE_HOSTS = (
    "DELETE FROM r.hosts WHERE resolution = :resolution AND bucket = :bucket AND address NOT IN "
    "(SELECT address FROM r.hosts WHERE resolution = :resolution AND bucket = :bucket "
    "ORDER BY octets DESC LIMIT :keep)")
CROWDED_BUCKETS = (
    "SELECT bucket FROM r.hosts WHERE resolution = :resolution AND bucket < :before "
    "GROUP BY bucket HAVING count(*) > :keep")


def add(connection, after_rowid, last_rowid):
    """The segment's rows (after, last] into every series (connection: the
    segment's, with rollups.db attached as r)."""
    span = {"after": after_rowid, "last": last_rowid}
    for statement in STAGE.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.execute(STAGE_SERIES, span)
    connection.execute(STAGE_HOSTS.format(end="src", condition=""), span)
    connection.execute(STAGE_HOSTS.format(end="dst", condition=" AND dst != src"), span)
    for resolution in RESOLUTIONS:
        connection.execute(ADD_SERIES, {"resolution": resolution})
    connection.execute(ADD_HOSTS, {"resolution": HOUR})


def prune(connection, now_s, records_since_s):
    """Buckets that are over and older than the oldest record
    (records_since_s) keep their top hosts only (queries answer from the
    complete ones, store/query.py); what is past its retention goes."""
    for resolution in HOST_RESOLUTIONS:
        current = min(int(now_s), int(records_since_s)) // resolution * resolution
        crowded = connection.execute(CROWDED_BUCKETS, {
            "resolution": resolution, "before": current, "keep": TOP_HOSTS}).fetchall()
        for (bucket,) in crowded:
            connection.execute(PRUNE_HOSTS, {"resolution": resolution, "bucket": bucket,
                                             "keep": TOP_HOSTS})
    for resolution, keep_s in RETENTION_S.items():
        oldest = int(now_s) - keep_s
        connection.execute("DELETE FROM r.series WHERE resolution = ? AND bucket < ?",
                           (resolution, oldest))
        connection.execute("DELETE FROM r.hosts WHERE resolution = ? AND bucket < ?",
                           (resolution, oldest))


def shrink(connection):
    """The oldest day of the finest resolution that has rows goes (the file
    passed its share of the budget); False when nothing is left to remove."""
    for resolution in RESOLUTIONS:
        for table in ("hosts", "series"):
            row = connection.execute(f"SELECT min(bucket) FROM r.{table} WHERE resolution = ?",
                                     (resolution,)).fetchone()
            if row[0] is not None:
                connection.execute(f"DELETE FROM r.{table} WHERE resolution = ? AND bucket < ?",
                                   (resolution, row[0] + DAY))
                return True
    return False


def series(connection, resolution, since_s, until_s, by="interface"):
    """[(bucket, key, octets, packets, flows)] of one resolution; key: the
    interface name (or ifindex), or the protocol number."""
    if by == "protocol":
        return connection.execute(
            "SELECT bucket, protocol, sum(octets), sum(packets), sum(flows) FROM series "
            "WHERE resolution = ? AND bucket >= ? AND bucket < ? GROUP BY 1, 2 ORDER BY 1, 2",
            (resolution, since_s, until_s)).fetchall()
    return connection.execute(
        "SELECT bucket, coalesce(i.name, s.ifindex), sum(octets), sum(packets), sum(flows) "
        "FROM series s LEFT JOIN interfaces i USING (ifindex) "
        "WHERE resolution = ? AND bucket >= ? AND bucket < ? GROUP BY 1, 2 ORDER BY 1, 2",
        (resolution, since_s, until_s)).fetchall()


def top_hosts(connection, resolution, since_s, until_s, limit):
    return connection.execute(
        "SELECT address, sum(octets), sum(packets), sum(flows) FROM hosts "
        "WHERE resolution = ? AND bucket >= ? AND bucket < ? GROUP BY 1 "
        "ORDER BY 2 DESC LIMIT ?", (resolution, since_s, until_s, limit)).fetchall()
