"""`flowprobe run` without a network: what it does with its config."""

import subprocess
import sys


def run(config_path):
    return subprocess.run([sys.executable, "-m", "flowprobe", "run", "--config", str(config_path),
                           "--no-ubus"], capture_output=True, text=True, timeout=30)


def test_bad_config_at_start_exits_non_zero(tmp_path):
    config = tmp_path / "bad.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '1'\n\toption max_flows 'lots'\n")
    result = run(config)
    assert result.returncode == 2
    assert "flowprobe.main.max_flows" in result.stderr and "lots" in result.stderr


def test_disabled_config_does_nothing(tmp_path):
    config = tmp_path / "off.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '0'\n")
    result = run(config)
    assert result.returncode == 0 and "disabled" in result.stderr


def test_missing_config_is_a_clear_error(tmp_path):
    result = run(tmp_path / "nowhere.conf")
    assert result.returncode == 2 and "nowhere.conf" in result.stderr


def spool_config(path, spool_dir, user):
    path.write_text("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
                    f"\toption spool_dir '{spool_dir}'\n\toption user '{user}'\n"
                    "config collector 'c'\n\toption host '127.0.0.1'\n\toption port '9'\n"
                    "\toption spool_kb '64'\n")
    return path


def test_the_spool_directory_is_made_for_the_user_and_nothing_else_is_touched(tmp_path):
    """An existing spool_dir (it could be /etc) is neither handed to the
    user nor emptied of files that are not this daemon's spools."""
    import os

    import pytest

    from flowprobe.daemon import Probe
    if os.geteuid() != 0:
        pytest.skip("making a directory for another user needs root")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.spool").write_text("someone else's")
    (existing / "c.123.4.spool").write_text("an earlier run's")
    probe = Probe(str(spool_config(tmp_path / "a.conf", existing, "nobody")), ubus=False)
    probe.sinks.close()
    assert existing.stat().st_uid == 0
    # the earlier run's spool is gone, this run's closed with its exporter
    assert sorted(p.name for p in existing.iterdir()) == ["notes.spool"]
    fresh = tmp_path / "fresh"
    probe = Probe(str(spool_config(tmp_path / "b.conf", fresh, "nobody")), ubus=False)
    probe.sinks.close()
    nobody = __import__("pwd").getpwnam("nobody")
    assert (fresh.stat().st_uid, fresh.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


def output_of(result):
    return result.stdout + result.stderr


def test_a_filter_that_does_not_compile_stops_the_start(tmp_path):
    """Every filter is compiled before the daemon runs (before: it ran with
    no capture, retrying every 5 s)."""
    config = tmp_path / "f.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
                      f"\toption control_socket '{tmp_path / 'c.sock'}'\n"
                      "\toption filter 'udp and port'\n")
    result = run(config)
    assert result.returncode == 2, output_of(result)
    assert "interface lo: filter" in output_of(result) and "syntax error" in output_of(result)


def test_a_control_socket_directory_that_is_missing_is_a_config_error(tmp_path):
    config = tmp_path / "s.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
                      f"\toption control_socket '{tmp_path / 'nowhere' / 'c.sock'}'\n")
    result = run(config)
    assert result.returncode == 2, output_of(result)
    assert "flowprobe.main.control_socket: cannot create the control socket" in output_of(result)


def test_packets_while_an_interface_is_not_captured_are_counted(tmp_path, monkeypatch):
    """The kernel's own counters say how many packets passed while a capture
    was down: they are reported, not silently missing."""
    from flowprobe import config as configuration
    from flowprobe.sources import capture as capture_source

    statistics = tmp_path / "eth9" / "statistics"
    statistics.mkdir(parents=True)
    monkeypatch.setattr(capture_source, "SYS_NET", tmp_path)

    def counters(rx, tx):
        (statistics / "rx_packets").write_text(f"{rx}\n")
        (statistics / "tx_packets").write_text(f"{tx}\n")

    captures = capture_source.CaptureSet(meter=None, on_records=lambda: None)
    capture = capture_source.Capture(configuration.InterfaceConfig("eth9", direction="in"),
                                     device="eth9")
    counters(1000, 50)
    captures._lost(capture, "down for the test", quiet=True)
    counters(1250, 90)
    assert captures._not_captured(capture) == 250
    captures._up(capture)                      # captured again: 250 stay counted
    capture.sources = {0: "in"}
    counters(1400, 95)
    assert captures._not_captured(capture) == 250
    capture.sources = {}
    captures._lost(capture, "down for the test", quiet=True)
    counters(1410, 95)
    assert captures._not_captured(capture) == 260
    # the device goes away: what it passed stays counted (before: back to 250)
    (statistics / "rx_packets").unlink()
    assert captures._not_captured(capture) == 260
    counters(30, 0)                            # a new device under the name, from 0
    assert captures._not_captured(capture) == 290


def test_a_run_that_was_killed_is_reported_at_the_next_start(tmp_path):
    """kill -9 leaves no 'stopped' line: the next start logs it and status
    says so; a clean stop is remembered as one."""
    import os
    import signal
    import time

    from flowprobe.control.client import call

    socket_path = tmp_path / "c.sock"
    config = tmp_path / "k.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
                      f"\toption control_socket '{socket_path}'\n")

    def start():
        process = subprocess.Popen([sys.executable, "-m", "flowprobe", "run", "--config",
                                    str(config), "--no-ubus"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                return process, call(socket_path, "status")
            except Exception:
                assert process.poll() is None
                time.sleep(0.1)
        raise AssertionError("the daemon did not start")

    if os.geteuid() != 0:
        import pytest
        pytest.skip("capture on lo needs root")
    first, status = start()
    assert status["previous_run"] in (None, "stopped cleanly")
    first.kill()
    first.wait(10)
    second, status = start()
    assert status["previous_run"].startswith("ended without a clean stop (running pid "
                                             f"{first.pid}")
    second.send_signal(signal.SIGTERM)
    out, _ = second.communicate(timeout=30)
    assert "the previous run ended without a clean stop" in out
    third, status = start()
    third.send_signal(signal.SIGTERM)
    third.communicate(timeout=30)
    assert status["previous_run"] == "stopped cleanly"
    assert (tmp_path / "c.state").stat().st_mode & 0o777 == 0o600


def test_the_run_state_file_trusts_nothing_it_did_not_write(tmp_path):
    """Whatever is in the file (a deep JSON, a list, another user's file, a
    link) is ignored, never a crash (before: a planted '[' * 4096 in the
    conntrack state file stopped every start with a RecursionError)."""
    import os

    from flowprobe.run_state import RunState

    path = tmp_path / "flowprobe.state"
    for junk in (b"[" * 4096, b"[1, 2]", b"\xff\xfe", b'{"run": 7, "conntrack": "x"}'):
        path.write_bytes(junk)
        state = RunState(path)
        assert state.error is None and state.previous is None, junk
        state.stopped()
    assert RunState(path).previous.startswith("stopped pid")
    path.unlink()
    os.symlink(tmp_path / "elsewhere", path)
    linked = RunState(path)
    assert linked.fd is None and "cannot keep the run state" in linked.error
    assert not (tmp_path / "elsewhere").exists()


def test_a_conntrack_stop_in_the_run_state_is_checked_before_use(tmp_path):
    """Numbers that are not a past time or a count that fits are ignored
    (before: stopped_ms -1 or 2**70 reached the C core and stopped every start)."""
    from types import SimpleNamespace

    from flowprobe.run_state import RunState
    from flowprobe.sources.conntrack import ConntrackService, kernel_identity

    state = RunState(tmp_path / "fp.state")
    source = SimpleNamespace(probe=SimpleNamespace(run_state=state))
    for stopped_ms, open_connections in ((-1, 5), (2**70, 5), (1000, -3), (1000, 2**40),
                                         (True, 5), (10**20, 1)):
        state.put("conntrack", {"kernel": kernel_identity(), "stopped_ms": stopped_ms,
                                "open": open_connections})
        assert ConntrackService._previous_stop(source) is None, (stopped_ms, open_connections)
    state.put("conntrack", {"kernel": kernel_identity(), "stopped_ms": 1000, "open": 5})
    assert ConntrackService._previous_stop(source)["open"] == 5


def test_status_says_what_was_dropped_in_the_last_minute():
    from flowprobe.cli.status import _drops_line
    from flowprobe.service.metering import LastMinute
    recent = LastMinute()
    assert recent.summary() is None
    for second in range(100):          # the totals each tick; only the last 61 are kept
        recent.sample(float(second), second * 1000, second * 10)
    assert recent.summary() == {"seconds": 60.0, "packets_read": 60000, "packets_dropped": 600}
    line = _drops_line({"meter": {"packets_read": 99000, "dropped_truncated": 990},
                        "collectors": [], "last_minute": recent.summary()})
    assert line.startswith("600 of 60.0 k read in the last 1 min"), line
