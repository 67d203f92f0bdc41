"""Reloads of the conntrack source during a churn of 50 000 short
connections (25 000 TCP, 25 000 UDP) through a masquerading router: every
connection the client made must be exported exactly once, whole (UDP: its
one datagram to the byte; TCP: at least its handshake and 1000-byte reply),
or be counted as lost in `status` and the log.

The churn overflows the table on purpose (the kernel holds more connections
than the source tracks, and a dump a second fills it), as the attack in
issue 23 did.

Needs root, ip netns and nft, and a kernel with nf_conntrack and nf_nat.
"""

import signal
import time

import pytest

import conntrack_churn as churn
from netlab import RouterLab, missing
from test_daemon_live import Daemon

skip_reason = missing()
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"conntrack: {skip_reason}")

PER_WORKER = 12500   # 2 workers: 25 000 TCP and 25 000 UDP connections


def config_text(socket_path, max_connections, extra=None):
    main = {"enabled": 1, "source": "conntrack", "control_socket": socket_path,
            "active_timeout": 3600, "conntrack_max_connections": max_connections,
            # a dump a second: the table holds (and overflows with) what the kernel has
            "conntrack_dump_interval": 1,
            **(extra or {})}
    lines = ["config flowprobe 'main'"]
    lines += [f"\toption {key} '{value}'" for key, value in main.items()]
    lines += ["config collector 'recorder'", "\toption protocol 'ipfix'", "\toption biflow '1'",
              "\toption transport 'tcp'", "\toption host '127.0.0.1'",
              f"\toption port '{churn.RECORDER_PORT}'"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def churn_lab():
    with RouterLab() as lab:
        reason = churn.prepare(lab)
        if reason:
            pytest.skip(f"conntrack: {reason}")
        yield lab


def reload_during_churn(lab, tmp_path, before, after, delay=1.5):
    recorded = tmp_path / "ipfix.bin"
    recorder = churn.start_recorder(lab, recorded)
    socket_path = str(tmp_path / "control.sock")
    daemon = Daemon(lab, tmp_path, config_text(socket_path, before))
    daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
    load = churn.Churn(lab, per_worker=PER_WORKER)
    time.sleep(delay)
    daemon.config.write_text(config_text(socket_path, after))
    daemon.process.send_signal(signal.SIGHUP)
    done = load.wait()
    # every DESTROY in (UDP 2 s, TCP TIME_WAIT 1 s; the kernel collects expired
    # connections at its own pace), then the last records out
    daemon.wait_until(lambda s: s["conntrack"]["records"] >= len(done), timeout=120)
    status = daemon.status()
    daemon.stop()
    time.sleep(0.5)
    recorder.terminate()
    recorder.wait(10)
    result = churn.compare(done, churn.ipfix_records(recorded.read_bytes()), lab.client4)
    return result, status["conntrack"], daemon.output(), load.seconds


def check(result, conntrack, log, seconds):
    summary = (f"{result['connections']} connections in {seconds:.1f} s: "
               f"{len(result['missing'])} missing, {len(result['doubled'])} doubled, "
               f"{len(result['short'])} short; conntrack {conntrack}")
    print(summary)
    assert result["connections"] >= 49_000, summary
    assert "reloaded" in log and "Traceback" not in log, log
    assert result["doubled"] == [], summary
    # the reload hands the source over whole: nothing to lose, so nothing counted as lost
    assert result["missing"] == [] and result["short"] == [], summary
    assert conntrack["ends_before_baseline"] == 0 and conntrack["records_lost"] == 0, summary
    assert conntrack["events_destroy"] >= result["connections"], summary

def test_a_reload_that_shrinks_the_table_during_churn(churn_lab, tmp_path):
    check(*reload_during_churn(churn_lab, tmp_path, 16384, 4096))


def test_a_reload_that_keeps_the_table_during_churn(churn_lab, tmp_path):
    check(*reload_during_churn(churn_lab, tmp_path, 16384, 16384))
