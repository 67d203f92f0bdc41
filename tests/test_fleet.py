"""A fleet of routers into an existing engine: three flowprobe processes, each
in a network namespace of its own (its own exporter address and observation
domain, one exporting IPFIX, one NetFlow v9, one v5), send to pmacct's
nfacctd in a collector namespace, whose pgsql plugin keeps hourly totals per
router, observation domain and IP protocol in a throwaway PostgreSQL.  The
SQL totals must be the captures' for every router, protocol and hour.

Each router replays traffic that crosses an hour: a generated capture at
xx:59:00-xx:59:30 and another at yy:00:10-yy:00:40 (flows idle out between
them, so no record spans the hour).  Replayed captures, not live traffic:
pmacct bins by the flows' own times, which only a capture can put on both
sides of an hour within a test.
"""

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import netlab
import throwaway_postgres
from captures import pcapfile
from collector_tools import NFACCTD, Nfacctd, missing_tools
from realstack import simple_truth

GENERATOR = Path(__file__).resolve().parent.parent / "tools" / "gen_capture.py"

CAPTURE_START_S = 1_700_000_000          # gen_capture's fixed start: 2023-11-14 22:13:20 UTC
HOUR = 1_700_002_800                      # 2023-11-14 23:00:00 UTC
HALVES = (HOUR - 60, HOUR + 10)           # the two captures' starts, either side of HOUR
ROUTERS = {1: "ipfix", 2: "netflow9", 3: "netflow5"}
TIMEOUTS = ("--idle-timeout", "35", "--unanswered-timeout", "35", "--active-timeout", "3600")

TABLE = """CREATE TABLE flows (
    peer_ip_src inet NOT NULL, export_proto_sysid BIGINT NOT NULL, ip_proto SMALLINT NOT NULL,
    packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    stamp_inserted BIGINT NOT NULL, stamp_updated BIGINT,
    PRIMARY KEY (peer_ip_src, export_proto_sysid, ip_proto, stamp_inserted))"""


def _missing():
    return (netlab.missing() or throwaway_postgres.missing() or missing_tools(NFACCTD))


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"fleet: {_missing()}")


def router_capture(directory, router):
    """Two generated captures, moved to either side of HOUR, as one pcap; and the truth:
    {(ip_protocol, hour): (packets, octets)}, IPv4 only for a v5 router."""
    frames, truth = [], {}
    for half, start in enumerate(HALVES):
        part = directory / f"r{router}-{half}.pcap"
        subprocess.run([sys.executable, str(GENERATOR), "-o", str(part), "--packets", "1500",
                        "--flows", "60", "--seed", str(10 * router + half)], check=True,
                       capture_output=True)
        shift_us = (start - CAPTURE_START_S) * 1_000_000
        _, part_frames = pcapfile.read(part)
        frames += [(stamp + shift_us, data) for stamp, data, _ in part_frames]
        hour = start // 3600 * 3600
        for key, (packets, octets) in simple_truth.truth(str(part)).items():
            if ROUTERS[router] == "netflow5" and key[0] != 4:
                continue
            old = truth.get((key[1], hour), (0, 0))
            truth[(key[1], hour)] = (old[0] + packets, old[1] + octets)
    path = directory / f"r{router}.pcap"
    pcapfile.write(path, frames)
    return path, truth


class Fleet:
    """A collector namespace and one namespace per router, each joined to the
    collector by a veth pair: router N is 10.77.N.2, the collector 10.77.N.1."""

    def __init__(self, routers):
        tag = uuid.uuid4().hex[:6]
        self.collector = f"collectors-c-{tag}"
        self.routers = {n: f"collectors-r{n}-{tag}" for n in routers}

    @staticmethod
    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def __enter__(self):
        try:
            for namespace in (self.collector, *self.routers.values()):
                self.ip("netns", "add", namespace)
                self.ip("-n", namespace, "link", "set", "lo", "up")
            for n, namespace in self.routers.items():
                self.ip("link", "add", "uplink", "netns", namespace, "type", "veth", "peer",
                        "name", f"router{n}", "netns", self.collector)
                self.ip("-n", namespace, "addr", "add", f"10.77.{n}.2/24", "dev", "uplink")
                self.ip("-n", self.collector, "addr", "add", f"10.77.{n}.1/24", "dev",
                        f"router{n}")
                self.ip("-n", namespace, "link", "set", "uplink", "up")
                self.ip("-n", self.collector, "link", "set", f"router{n}", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for namespace in (self.collector, *self.routers.values()):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def sentinel_packets(pg):
    rows = pg.query("SELECT COALESCE(SUM(packets), 0) FROM flows "
                    "WHERE peer_ip_src = '127.0.0.2'")
    return int(rows[0][0])


def await_sentinel(collector, pg, before, timeout=20.0, resend=2.0):
    """Sentinels until one more than `before` is in the table and no purge is still being
    written: pmacct's pgsql plugin writes a purge in one transaction, and the purges
    before the sentinel's have ended, so everything received earlier is in too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        collector.send_sentinel()
        again = time.monotonic() + resend
        while time.monotonic() < again:
            if sentinel_packets(pg) > before and collector.writers_idle():
                return sentinel_packets(pg)
            time.sleep(0.1)
    raise AssertionError(f"pmacct wrote no sentinel to PostgreSQL:\n{collector.log()}\n"
                         f"{pg.log()}")


def test_a_fleet_lands_in_postgresql_per_router_protocol_and_hour(tmp_path):
    captures = {n: router_capture(tmp_path, n) for n in ROUTERS}
    with throwaway_postgres.ThrowawayPostgres() as pg, Fleet(ROUTERS) as fleet:
        pg.sql(TABLE)
        plugins = ["plugins: pgsql[fleet]",
                   "aggregate[fleet]: peer_src_ip, export_proto_sysid, proto",
                   f"sql_host[fleet]: {pg.socket_dir}", "sql_db[fleet]: flows",
                   "sql_table[fleet]: flows", "sql_user[fleet]: postgres",
                   "sql_passwd[fleet]: unused", "sql_optimize_clauses[fleet]: true",
                   "sql_history[fleet]: 1h", "sql_history_roundoff[fleet]: h",
                   "sql_refresh_time[fleet]: 1"]
        with Nfacctd(host="0.0.0.0", netns=fleet.collector, plugins=plugins) as collector:
            ready = await_sentinel(collector, pg, 0)
            for n, namespace in fleet.routers.items():
                url = f"{ROUTERS[n]}://10.77.{n}.1:{collector.port}?domain={100 + n}"
                done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m",
                                       "flowprobe", "read", str(captures[n][0]), *TIMEOUTS,
                                       "--export", url],
                                      capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stderr
            await_sentinel(collector, pg, ready)
            complaints = collector.complaints()
        rows = pg.query("SELECT host(peer_ip_src), export_proto_sysid, ip_proto, "
                        "stamp_inserted, packets, bytes FROM flows "
                        "WHERE peer_ip_src <> '127.0.0.2'")
    stored = {}
    for address, domain, protocol, hour, packets, octets in rows:
        key = (address, int(domain), int(protocol), int(hour))
        old = stored.get(key, (0, 0))
        stored[key] = (old[0] + int(packets), old[1] + int(octets))
    expected = {(f"10.77.{n}.2", 100 + n, protocol, hour): totals
                for n in ROUTERS for (protocol, hour), totals in captures[n][1].items()}
    assert complaints == []
    assert {h for *_, h in expected} == {HOUR - 3600, HOUR}     # both hours are there
    assert stored == expected
