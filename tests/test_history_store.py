"""The history store in-process: a generated day under a budget far smaller
than its records, restarts, the rollups that outlive the records, queries
against the truth, and a hostile history_dir."""

import os
import subprocess
import sys
import textwrap

import pytest

from flowprobe.store import query, rollups, segments
from flowprobe.store.segments import HistoryError
from flowprobe.store.sink import QUEUE_RECORDS, HistorySink
from history_records import DAY_START_MS, HOUR_MS, Day

INTERFACES = {2: "lan", 3: "wan"}
DAY_END_MS = DAY_START_MS + 24 * HOUR_MS


def write(sink, day, batch=1024, every=8, now_ms=None):
    """The day's records as the meter hands them out, a tick every few
    batches (the clock at the end of the day: hours before are over)."""
    now_ms = now_ms or DAY_END_MS
    for n, (records, count) in enumerate(day.batches(batch)):
        sink.deliver(records, count, now_ms)
        if n % every == every - 1:
            sink._idle.wait(30)
            sink.tick(now_ms, force=True)
    sink._idle.wait(30)
    sink.tick(now_ms, force=True)
    sink._idle.wait(30)


def on_disk(directory):
    return sum(os.lstat(entry.path).st_blocks * 512 for entry in os.scandir(directory))


def ask(directory, spec, rollups=True):
    """A query as the daemon runs it: a top-hosts query takes whole hours
    from the rollups (rollups=False: from the records only)."""
    sealed, unsealed = segments.inventory(directory)
    assert not unsealed
    return query.run(query.Query(spec, DAY_END_MS), sealed, rollups_path=os.path.join(
        directory, segments.ROLLUPS_FILE) if rollups else None)


def groups(reply, key):
    return {group[key]: group["bytes"] for group in reply["groups"]}


def kept_truth(day, since_ms):
    kept = Day.__new__(Day)
    kept.truth = [t for t in day.truth if t[5] >= since_ms]
    return kept


@pytest.fixture(scope="module")
def day():
    return Day(30000, seed=7)


def test_a_day_under_a_small_budget_answers_as_the_truth_and_survives_restarts(tmp_path, day):
    directory = str(tmp_path / "history")
    budget = 1024 * 1024      # the records alone are 30000 x 176 bytes = 5.3 MB
    sink = HistorySink(directory, budget, 5, INTERFACES)
    sink.start()
    first_half = Day.__new__(Day)
    first_half.records, first_half.count = day.records, day.count // 2
    write(sink, first_half)
    sink.finish()
    # a restart: the inventory of names, then the second half of the day
    sink = HistorySink(directory, budget, 5, INTERFACES)
    before = len(sink.segments())
    assert before > 1
    sink.start()
    second_half = Day.__new__(Day)
    second_half.records = day.records + day.count // 2
    second_half.count = day.count - day.count // 2
    write(sink, second_half)
    stats = sink.stats()
    sink.finish()
    assert stats["records_written"] == second_half.count and stats["records_not_written"] == 0
    assert stats["segments_deleted"] > 0
    assert on_disk(directory) <= budget

    # what is still in the records: every host, port and hour as the truth
    sealed, _ = segments.inventory(directory)
    since = sealed[0].first_ms
    assert DAY_START_MS < since < DAY_END_MS - 2 * HOUR_MS   # hours of records are gone
    truth = kept_truth(day, since)
    everything = {"since": since, "until": DAY_END_MS, "limit": 1000}
    assert groups(ask(directory, dict(everything, group_by=["host"])), "host") == \
        dict(truth.per_host()) == \
        groups(ask(directory, dict(everything, group_by=["host"]), rollups=False), "host")
    assert groups(ask(directory, dict(everything, group_by=["dst_port"])), "dst_port") == \
        dict(truth.per_port())
    hours = ask(directory, dict(everything, bucket=3600))
    assert groups(hours, "time") == {hour: octets for hour, octets in truth.per_hour().items()
                                     if hour >= since // HOUR_MS * HOUR_MS} | {
        since // HOUR_MS * HOUR_MS: truth.per_hour()[since // HOUR_MS * HOUR_MS]}
    # one address, its records
    host = "10.0.0.17"
    records = ask(directory, dict(everything, address=host))
    assert records["matched"] == sum(1 for t in truth.truth if host in (t[0], t[1]))

    # the rollups outlive the records: every hour of the day, from the start
    import sqlite3
    connection = sqlite3.connect(os.path.join(directory, segments.ROLLUPS_FILE))
    series = rollups.series(connection, rollups.HOUR, DAY_START_MS // 1000, DAY_END_MS // 1000,
                            by="protocol")
    per_hour = {}
    for bucket, _protocol, octets, _packets, _flows in series:
        per_hour[bucket * 1000] = per_hour.get(bucket * 1000, 0) + octets
    assert per_hour == dict(day.per_hour())
    connection.close()


def test_filters_and_groups_combine(tmp_path, day):
    directory = str(tmp_path / "h")
    sink = HistorySink(directory, 64 * 1024 * 1024, 5, INTERFACES)
    sink.start()
    write(sink, day)
    sink.finish()
    span = {"since": DAY_START_MS, "until": DAY_END_MS, "limit": 1000}
    rows = [t for t in day.truth if t[4] == 6 and t[3] == 443 and t[8] == 2
            and t[0].startswith("10.0.1.") and t[6] >= 50000]
    reply = ask(directory, dict(span, protocol="tcp", dst_port=443, interface="lan",
                                src="10.0.1.0/24", min_bytes=50000, group_by=["src"]))
    expected = {}
    for t in rows:
        expected[t[0]] = expected.get(t[0], 0) + t[6]
    assert groups(reply, "src") == expected
    assert reply["flows"] == len(rows)
    # /24 and /64 groups, IPv6 included
    nets = groups(ask(directory, dict(span, group_by=["dst/24"], src="fd00::/16")), "dst/24")
    assert set(nets) == {"2001:db8::/64"}
    # whole hours of a top-hosts query from the rollups: the same as from the records
    hosts = dict(span, group_by=["host"], since=DAY_START_MS + 1234567)
    assert groups(ask(directory, hosts), "host") == groups(ask(directory, hosts, rollups=False),
                                                           "host")
    # and of series by protocol, interface, direction, per hour
    for keys in (["protocol"], ["interface", "direction"]):
        series = dict(span, group_by=keys, bucket=3600, since=DAY_START_MS + 1234567)
        assert ask(directory, series)["groups"] == ask(directory, series,
                                                       rollups=False)["groups"]
    # histograms by decade, per port: flows counted as the truth has them
    histogram = ask(directory, dict(span, group_by=["dst_port", "bytes/log"]))
    expected = {}
    for t in day.truth:
        key = (t[3], 10 ** (len(str(t[6])) - 1) if t[6] >= 10 else 0)
        expected[key] = expected.get(key, 0) + 1
    assert {(g["dst_port"], g["bytes/log"]): g["flows"] for g in histogram["groups"]} == expected
    # paging: two pages are the first 20, in order, without overlap
    top = ask(directory, dict(span, group_by=["host"], limit=20))["groups"]
    page1 = ask(directory, dict(span, group_by=["host"], limit=10))["groups"]
    page2 = ask(directory, dict(span, group_by=["host"], limit=10, offset=10))["groups"]
    assert page1 + page2 == top
    # records, newest first, with their interface's name
    [newest] = ask(directory, dict(span, limit=1))["records"]
    assert newest["start_ms"] == max(t[5] for t in day.truth)
    assert newest["interface"] in ("lan", "wan")


@pytest.mark.parametrize("spec, message", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"address": "10.0.0.300"}, "address '10.0.0.300' is not an IP address"),
    ({"port": 70000}, "port must be an integer 0..65535"),
    ({"protocol": "tcpp"}, "unknown protocol 'tcpp'"),
    ({"group_by": ["src/23"]}, "group_by must be a list of"),
    ({"since": "yesterday"}, "since must be Unix milliseconds"),
    ({"since": "1h", "until": "2h"}, "since must be before until"),
    ({"limit": 5000}, "limit must be an integer 1..1000"),
    ({"direction": "up"}, "direction must be in or out"),
    ({"sort": "time"}, "sort must be one of"),
])
def test_a_bad_query_names_its_key(spec, message):
    with pytest.raises(query.QueryError, match=message.replace("(", r"\(").replace(".", r"\.")):
        query.Query(spec, DAY_END_MS)


def test_a_query_past_its_deadline_is_stopped(tmp_path, day):
    directory = str(tmp_path / "h")
    sink = HistorySink(directory, 64 * 1024 * 1024, 5, INTERFACES)
    sink.start()
    write(sink, day)
    sink.finish()
    sealed, _ = segments.inventory(directory)
    spec = {"since": DAY_START_MS, "until": DAY_END_MS, "group_by": ["src", "dst", "src_port"]}
    with pytest.raises(query.QueryError, match="took longer than"):
        query.run(query.Query(spec, DAY_END_MS), sealed, deadline_s=0.0)


def test_a_full_queue_counts_what_it_could_not_take(tmp_path, day):
    sink = HistorySink(str(tmp_path / "h"), 64 * 1024 * 1024, 5, INTERFACES)
    for records, count in day.batches(1024):    # no tick: nothing leaves the queue
        sink.deliver(records, count, 0)
    assert sink.queued <= QUEUE_RECORDS
    assert sink.records_not_written == day.count - sink.queued > 0
    sink.finish()      # never started: what waited is counted too
    assert sink.stats()["records_not_written"] == day.count


def test_a_kill_9_loses_at_most_the_queue_and_never_a_segment(tmp_path, day):
    """A writer killed in the middle of its writes: at the next start, every
    sealed segment is whole, the open one is sealed with what it committed."""
    directory = tmp_path / "h"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from history_records import Day
        from flowprobe.store.sink import HistorySink
        day = Day(30000, seed=7)
        sink = HistorySink({str(directory)!r}, 1024 * 1024, 5, {{2: "lan", 3: "wan"}})
        sink.start()
        for n, (records, count) in enumerate(day.batches(1024)):
            sink.deliver(records, count, 0)
            sink.tick(0, force=True)
            if n == 20:   # killed while the writer is in the middle of a write
                sink._idle.wait(30)
                print(sink.stats()["records_written"], flush=True)
                for records, count in list(day.batches(1024))[21:29]:
                    sink.deliver(records, count, 0)
                sink.tick(0, force=True)
                time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGKILL)
            sink._idle.wait(30)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -9, done.stderr
    written = int(done.stdout)
    sealed, unsealed = segments.inventory(str(directory))
    assert len(unsealed) == 1
    sink = HistorySink(str(directory), 1024 * 1024, 5, INTERFACES)
    sink.start()
    sink.finish()
    sealed, unsealed = segments.inventory(str(directory))
    assert not unsealed
    reply = ask(str(directory), {"since": DAY_START_MS, "until": DAY_END_MS, "bucket": 86400})
    kept_since = sealed[0].first_ms
    # what was committed before the kill: all that was written, maybe part of the last write
    assert sum(1 for t in day.truth[:written] if t[5] >= kept_since) <= reply["flows"] <= \
        sum(1 for t in day.truth[:29 * 1024] if t[5] >= kept_since)
    import sqlite3
    for segment in sealed:
        connection = sqlite3.connect(segment.path)
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        connection.close()


def test_history_dir_that_others_control_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(HistoryError, match="not a directory"):
        HistorySink(str(link), 1 << 20, 5, INTERFACES)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(HistoryError, match="writable by others"):
        HistorySink(str(shared), 1 << 20, 5, INTERFACES)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(HistoryError, match="owned by uid 65534"):
            HistorySink(str(theirs), 1 << 20, 5, INTERFACES)


def test_a_link_planted_at_a_segment_name_is_never_followed(tmp_path, day):
    directory = tmp_path / "h"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (directory / "flows-00000001.db").symlink_to(victim)     # an "open segment" by its name
    (directory / "flows-00000002.db").symlink_to(victim)
    sink = HistorySink(str(directory), 4 << 20, 5, INTERFACES)
    sink.start()
    write(sink, Day(2000, seed=3))
    stats = sink.stats()
    sink.finish()
    assert victim.read_text() == "precious"
    assert stats["records_written"] == 2000
    assert (directory / "flows-00000001.db").is_symlink()


def test_a_full_disk_counts_what_it_could_not_write_and_goes_on(tmp_path, day):
    """history_kb larger than the filesystem: SQLite's 'disk is full' is a
    write error, counted with its records; the segments written stay whole."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        directory = str(mount / "h")
        sink = HistorySink(directory, 8 << 20, 5, INTERFACES)
        sink.start()
        write(sink, day, every=2)
        stats = sink.stats()
        sink.finish()
        assert stats["write_errors"] > 0 and stats["budget_lowered"]
        assert stats["budget_bytes"] < 640 * 1024
        assert stats["records_written"] + stats["records_not_written"] == day.count
        # the budget came down to what fits: most records were written after all
        assert stats["records_written"] > day.count // 2
        assert sum(s.size for s in sink.segments()) <= stats["budget_bytes"]
        # a restart seals what a full disk left open
        sink = HistorySink(directory, 8 << 20, 5, INTERFACES)
        sink.start()
        sink.finish()
        import sqlite3
        sealed, unsealed = segments.inventory(directory)
        assert not unsealed and sealed
        for segment in sealed:
            connection = sqlite3.connect(segment.path)
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            connection.close()
    finally:
        # every file closed: a descriptor left open would keep the mount busy
        busy = subprocess.run(["umount", str(mount)]).returncode
        if busy:
            subprocess.run(["umount", "-l", str(mount)])
        assert busy == 0, "a file of the store was left open"



@pytest.mark.parametrize("data, message", [
    ({"query": '{"since": "24h"}'}, None),
    ({"query": "{since"}, "not JSON"),
    ({"query": "[1]"}, "must be a JSON object"),
    ({"query": 5}, "must be a string"),
    ({}, "must be a string"),
    ({"query": "[" * 100 + "]" * 100}, "nested deeper"),
])
def test_ubus_carries_the_query_as_one_json_string(data, message):
    """python-ubus requires every declared argument: `query` declares one."""
    from flowprobe.control.handlers import ControlError
    from flowprobe.control.ubus import query_argument
    if message is None:
        assert query_argument(data) == {"since": "24h"}
    else:
        with pytest.raises(ControlError, match=message):
            query_argument(data)
