"""The history store in the real daemon: a generated day kept under a budget
far smaller than its records, the daemon started three times (once after a
kill -9 with live records written), and its queries over the control
socket and the CLI equal to the truth per host, port and hour."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from flowprobe.control.client import call
from flowprobe.store import segments
from flowprobe.store.sink import HistorySink
from history_records import DAY_START_MS, HOUR_MS, Day
from test_history_store import INTERFACES, kept_truth, write

DAY_END_MS = DAY_START_MS + 24 * HOUR_MS
BUDGET_KB = 1024
LIVE_PORT = 47391


def start(config):
    process = subprocess.Popen([sys.executable, "-m", "flowprobe", "run", "--config",
                                str(config.path), "--no-ubus"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return process, call(config.socket, "status")
        except Exception:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the daemon did not start")


def wait_for(predicate, config, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = call(config.socket, "status")
        if predicate(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"not reached: {status['history']}")


def wait_for_live_record(config, timeout=20):
    """Until the store holds this test's own flow: records_written would
    also count another process's traffic on lo, written before ours."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = call(config.socket, "query", {"since": "1h", "address": "127.0.0.1",
                                             "dst_port": LIVE_PORT, "protocol": "udp"})
        if live["matched"] >= 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"the live flow was not written: {live}")


class Config:
    def __init__(self, tmp_path, directory):
        self.socket = tmp_path / "c.sock"
        self.path = tmp_path / "h.conf"
        self.path.write_text(
            "config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
            f"\toption control_socket '{self.socket}'\n\toption idle_timeout '1'\n"
            "\toption unanswered_timeout '1'\n\toption history '1'\n"
            f"\toption history_dir '{directory}'\n\toption history_kb '{BUDGET_KB}'\n"
            "\toption history_flush '1'\n")


def day_answers(config, day, directory):
    """Per host, port and hour over the control socket, against the truth of
    what the budget kept."""
    sealed, _ = segments.inventory(directory)
    since = min(s.first_ms for s in sealed)
    truth = kept_truth(day, since)
    span = {"since": since, "until": DAY_END_MS, "limit": 1000}

    def sums(spec, key):
        return {g[key]: g["bytes"] for g in call(config.socket, "query", spec)["groups"]}

    assert sums(dict(span, group_by=["host"]), "host") == dict(truth.per_host())
    assert sums(dict(span, group_by=["dst_port"]), "dst_port") == dict(truth.per_port())
    first_hour = since // HOUR_MS * HOUR_MS
    hours = sums(dict(span, bucket=3600), "time")
    assert {h: v for h, v in hours.items() if h > first_hour} == {
        h: v for h, v in truth.per_hour().items() if h > first_hour}
    return since


def live_datagrams(count=5):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(b"history" * 10, ("127.0.0.1", LIVE_PORT))


def test_a_day_survives_a_kill_9_and_two_restarts_and_answers_as_the_truth(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("capture on lo needs root")
    directory = str(tmp_path / "history")
    day = Day(30000, seed=11)
    sink = HistorySink(directory, BUDGET_KB * 1024, 5, INTERFACES)
    sink.start()
    write(sink, day)
    sink.finish()
    raw = day.count * 176
    assert sum(s.size for s in segments.inventory(directory)[0]) * 4 < raw
    config = Config(tmp_path, directory)

    first, status = start(config)
    try:
        assert status["history"]["segments"] == len(segments.inventory(directory)[0])
        day_answers(config, day, directory)
        live_datagrams()
        wait_for_live_record(config)
    finally:
        first.kill()     # kill -9: the open segment is left as it was
        first.wait(10)
    assert len(segments.inventory(directory)[1]) == 1

    second, status = start(config)
    try:
        assert status["history"]["write_errors"] == 0
        day_answers(config, day, directory)
        live = call(config.socket, "query", {"since": "1h", "address": "127.0.0.1",
                                             "dst_port": LIVE_PORT, "protocol": "udp"})
        assert live["matched"] >= 1 and live["records"][0]["packets"] >= 1
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    finally:
        second.kill()
    assert not segments.inventory(directory)[1]   # a clean stop seals the open segment
    assert sum(os.lstat(e.path).st_blocks * 512 for e in os.scandir(directory)) <= \
        BUDGET_KB * 1024

    third, status = start(config)
    try:
        day_answers(config, day, directory)
        cli = subprocess.run([sys.executable, "-m", "flowprobe", "query", "--socket",
                              str(config.socket), "--since", "1h", "--dst-port",
                              str(LIVE_PORT), "--json"], capture_output=True, text=True,
                             timeout=30)
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["matched"] >= 1
        table = subprocess.run([sys.executable, "-m", "flowprobe", "query", "--socket",
                                str(config.socket), "--since", str(DAY_START_MS), "--until",
                                str(DAY_END_MS), "--top", "3"], capture_output=True,
                               text=True, timeout=30)
        assert table.returncode == 0 and "HOST" in table.stdout and "3 of" in table.stdout
        bad = call_error(config, {"group_by": ["colour"]})
        assert "group_by must be a list of" in bad
        # a reload: a bad value is refused by name, the store goes on; then off
        text = config.path.read_text()
        config.path.write_text(text.replace(f"history_dir '{directory}'",
                                            "history_dir 'relative'"))
        refused = call(config.socket, "reload")
        assert not refused["reloaded"] and "flowprobe.main.history_dir" in refused["error"]
        assert call(config.socket, "status")["history"]["enabled"]
        config.path.write_text(text.replace("history '1'", "history '0'"))
        assert call(config.socket, "reload")["reloaded"]
        assert call(config.socket, "status")["history"] is None
        assert "history store is off" in call_error(config, {})
        assert not segments.inventory(directory)[1]   # the store was closed, sealed
    finally:
        third.send_signal(signal.SIGTERM)
        third.communicate(timeout=30)


def call_error(config, spec):
    from flowprobe.control.handlers import ControlError
    try:
        call(config.socket, "query", spec)
    except ControlError as e:
        return str(e)
    raise AssertionError("the query was not refused")
