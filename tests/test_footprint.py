"""What an idle daemon holds (issue 18: idle RSS): the flow table's pages
become resident only as flows use them, and the daemon keeps no module it
needs only for a moment (argparse for its own command line, logging.handlers
for syslog, the idna codec for an address, ipaddress) or not at all (the
conntrack source without `source conntrack`, encoders no collector speaks).  The figures
themselves are bench/footprint_bench.py's."""

import json
import os
import subprocess
import sys

import pytest

from flowprobe.cli import _modules_for, _run_arguments, build_parser
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings
from test_flow_slots import finish, udp4, udp6

# ---- the command line procd gives `run` ----

@pytest.mark.parametrize("argv", [
    ["run"],
    ["run", "--config", "/etc/config/flowprobe"],
    ["run", "--config=/tmp/x", "--no-ubus"],
    ["run", "--no-ubus", "--socket", "/tmp/s.sock", "--config", "/tmp/c"],
    ["run", "--socket=", "--config", "a b"],
])
def test_runs_options_read_as_argparse_reads_them(argv):
    ours = _run_arguments(argv)
    theirs = build_parser(_modules_for(argv)).parse_args(argv)
    assert ours is not None
    assert (ours.command, ours.config, ours.socket, ours.no_ubus, ours.handler) == \
        (theirs.command, theirs.config, theirs.socket, theirs.no_ubus, theirs.handler)


@pytest.mark.parametrize("argv", [
    ["run", "--help"], ["run", "--conf", "x"], ["run", "--config"], ["run", "--config", "-x"],
    ["run", "extra"], ["run", "--no-ubus=1"], ["status"], [], ["--version"],
])
def test_anything_else_goes_to_argparse(argv):
    assert _run_arguments(argv) is None


def test_the_started_daemon_keeps_no_start_up_only_module(tmp_path):
    """The daemon built from a config with an IPFIX collector, logging to
    syslog as under procd (the socket is missing here: the fallback)."""
    config = tmp_path / "flowprobe.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '0'\n"
                      f"\toption control_socket '{tmp_path / 'control.sock'}'\n"
                      "config collector 'sink'\n\toption protocol 'ipfix'\n"
                      "\toption host '127.0.0.1'\n\toption port '4739'\n")
    code = ("import sys\nfrom flowprobe.cli import main\n"
            f"main(['run', '--config', {str(config)!r}, '--no-ubus'])\n"
            "import json\nprint(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=dict(os.environ, FLOWPROBE_LOG="syslog"))
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    assert "flowprobe.export.transport" in modules and "flowprobe.meter" in modules
    kept = modules & {"argparse", "gettext", "locale", "logging.handlers", "pickle", "copy",
                      "queue", "encodings.idna", "stringprep", "unicodedata", "ipaddress",
                      "flowprobe.sources.conntrack", "flowprobe.export.netflow9",
                      "flowprobe.export.netflow5", "flowprobe.export.sflow",
                      "flowprobe.enrich.routes", "flowprobe.enrich.prefixes"}
    assert not kept, sorted(kept)


# ---- the table: reserved whole, resident as used ----

def test_a_fresh_table_has_its_capacity_reserved_and_nothing_resident():
    meter = Meter(MeterSettings(max_flows=262144, bidirectional=True, macs=True,
                                icmp_errors=True, verify_checksums=True, tunnels="both"))
    assert meter.memory_bytes > 30 << 20
    assert meter.resident_bytes < 256 << 10, meter.resident_bytes


def test_flows_make_pages_resident_and_every_packet_is_in_a_record():
    m = Meter(MeterSettings(hash_seed=1, max_flows=262144))
    fresh = m.resident_bytes
    for n in range(3000):
        m.process_frame(udp4(n, 1000 + n % 7), 1, 1_700_000_000_000_000 + n)
        m.process_frame(udp6(n), 1, 1_700_000_000_000_000 + n)
    assert fresh < m.resident_bytes <= m.memory_bytes
    records = finish(m)
    assert len(records) == 6000 and sum(r["packets"] for r in records) == 6000


def test_a_capacity_the_process_cannot_map_refuses_to_start_naming_it(tmp_path):
    """The whole capacity is mapped at start: beyond what the process may
    have, the daemon exits 2 with one line naming max_flows, no traceback."""
    config = tmp_path / "flowprobe.conf"
    config.write_text("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
                      "\toption max_flows '16777216'\n"
                      f"\toption control_socket '{tmp_path / 'control.sock'}'\n")
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from flowprobe.cli import main\n"
            f"sys.exit(main(['run', '--config', {str(config)!r}, '--no-ubus']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert "cannot allocate the tables (max_flows 16777216" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_reload_to_a_capacity_the_process_cannot_map_is_refused_and_the_old_goes_on(tmp_path):
    """Reload as well as start: the new capacity is mapped before the switch;
    refused, the running table and its flows stay."""
    import time

    from flowprobe.control.client import call
    sock = tmp_path / "control.sock"
    config = tmp_path / "flowprobe.conf"
    text = ("config flowprobe 'main'\n\toption enabled '1'\n\tlist interface 'lo'\n"
            f"\toption max_flows '4096'\n\toption control_socket '{sock}'\n")
    config.write_text(text)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from flowprobe.cli import main\n"
            f"sys.exit(main(['run', '--config', {str(config)!r}, '--no-ubus']))\n")
    daemon = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        status = call(sock, "status")
        if not status["interfaces"]:
            pytest.skip("capture on lo needs root")
        config.write_text(text.replace("'4096'", "'16777216'"))
        reply = call(sock, "reload")
        assert not reply["reloaded"] and "max_flows 16777216" in reply["error"], reply
        assert call(sock, "status")["meter"]["max_flows"] == 4096
        assert daemon.poll() is None
    finally:
        daemon.terminate()
        out = daemon.communicate(timeout=30)[0]
    assert "Traceback" not in out, out
