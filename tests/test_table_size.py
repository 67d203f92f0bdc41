"""max_flows 'auto' (table_size.py): the formula on fake /proc figures, the
config option that resolves it and says why, and what reading a config
imports (a sys.modules check, deterministic: no timing)."""

import json
import subprocess
import sys

import pytest

from flowprobe import config, table_size
from flowprobe.settings import MeterSettings, SettingsError

MB = 1024 * 1024


def fake_proc(tmp_path, mem_total_kb, conntrack_max):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {mem_total_kb} kB\nMemFree:        1000 kB\n")
    conntrack = tmp_path / "nf_conntrack_max"
    if conntrack_max is not None:
        conntrack.write_text(f"{conntrack_max}\n")
    return str(meminfo), str(conntrack)


@pytest.mark.parametrize("mem_mb, conntrack_max, flows, bound", [
    (64, 4096, 8192, "nf_conntrack_max 4096"),        # conntrack: 2 flows a connection
    (128, 16384, 32768, "nf_conntrack_max 16384"),
    (256, 65536, 87040, "MemTotal 256 MB"),           # memory: 1/32 at 96 B a flow
    (1024, 262144, 349184, "MemTotal 1024 MB"),
    (128, None, 43008, "MemTotal 128 MB"),            # no conntrack: memory, within 65536
    (4096, None, 65536, "the default"),
    (16, 100, 1024, "held within 1024"),              # never below MIN_FLOWS
    (1 << 22, 1 << 30, 1 << 24, "held within"),       # nor above the schema's bound
])
def test_auto_is_the_smaller_bound_rounded(tmp_path, mem_mb, conntrack_max, flows, bound):
    meminfo, conntrack = fake_proc(tmp_path, mem_mb * 1024, conntrack_max)
    capacity, reason = table_size.auto_max_flows(meminfo, conntrack)
    assert capacity == flows
    assert capacity % table_size.ROUND == 0
    assert reason.startswith(f"auto: {flows} flows (") and bound in reason
    # what the table commits stays within its share of the memory (floor aside)
    if flows > table_size.MIN_FLOWS:
        assert capacity * table_size.SLOT_BYTES <= mem_mb * MB // table_size.MEMORY_SHARE


@pytest.mark.parametrize("mem_mb", [128, 256, 1024])
def test_what_the_meter_really_commits_stays_within_the_share(mem_mb):
    # SLOT_BYTES against the core's own figure (IPv6 pool, export reserve,
    # TCP end states and the fragment table included), not against itself
    from flowprobe.meter import Meter
    capacity, _ = table_size.choose(mem_mb * MB, None)
    meter = Meter(MeterSettings(max_flows=capacity))
    assert meter.memory_bytes <= mem_mb * MB // table_size.MEMORY_SHARE


def test_unreadable_proc_falls_back_to_the_default(tmp_path):
    capacity, reason = table_size.auto_max_flows(str(tmp_path / "none"), str(tmp_path / "none"))
    assert capacity == table_size.DEFAULT_FLOWS and "default" in reason


def test_garbage_in_proc_is_not_trusted(tmp_path):
    meminfo, conntrack = fake_proc(tmp_path, 128 * 1024, None)
    (tmp_path / "nf_conntrack_max").write_text("lots\n")
    assert table_size.auto_max_flows(meminfo, conntrack)[0] == 43008


def test_config_resolves_auto_and_says_why(tmp_path, monkeypatch):
    meminfo, conntrack = fake_proc(tmp_path, 128 * 1024, 16384)
    monkeypatch.setattr(table_size, "MEMINFO", meminfo)
    monkeypatch.setattr(table_size, "CONNTRACK_MAX", conntrack)
    parsed = config.parse("config flowprobe main\n\toption max_flows 'auto'\n")
    assert parsed.meter.max_flows == 32768
    assert parsed.max_flows_auto.startswith("auto: 32768 flows (2 x nf_conntrack_max 16384")
    fixed = config.parse("config flowprobe main\n\toption max_flows '1000'\n")
    assert fixed.meter.max_flows == 1000 and fixed.max_flows_auto == ""


def test_an_ipv6_share_larger_than_the_auto_table_is_held_to_it_with_a_warning(
        tmp_path, monkeypatch):
    # a config written for a big router, installed on a small one: it still starts
    meminfo, conntrack = fake_proc(tmp_path, 128 * 1024, 16384)
    monkeypatch.setattr(table_size, "MEMINFO", meminfo)
    monkeypatch.setattr(table_size, "CONNTRACK_MAX", conntrack)
    parsed = config.parse("config flowprobe main\n\toption max_flows 'auto'\n"
                          "\toption max_flows_ipv6 '100000'\n")
    assert parsed.meter.max_flows_ipv6 == parsed.meter.max_flows == 32768
    assert any("max_flows_ipv6: 100000 is more than max_flows" in w for w in parsed.warnings)
    with pytest.raises(config.ConfigError, match=r"max_flows_ipv6.*at most max_flows \(1000\)"):
        config.parse("config flowprobe main\n\toption max_flows '1000'\n"
                     "\toption max_flows_ipv6 '1001'\n")


@pytest.mark.parametrize("value", ["Auto", "automatic", "0", "-1"])
def test_anything_else_is_refused_naming_the_option(value):
    with pytest.raises(config.ConfigError, match=r"main\.max_flows.*or auto"):
        config.parse(f"config flowprobe main\n\toption max_flows '{value}'\n")


def test_the_meter_itself_takes_numbers_only():
    with pytest.raises(SettingsError, match="max_flows"):
        MeterSettings(max_flows="auto")


def test_the_shipped_config_sizes_the_table_for_the_router(tmp_path, monkeypatch):
    # the router's config says auto; the daemon's own default stays 65536
    meminfo, conntrack = fake_proc(tmp_path, 128 * 1024, 16384)
    monkeypatch.setattr(table_size, "MEMINFO", meminfo)
    monkeypatch.setattr(table_size, "CONNTRACK_MAX", conntrack)
    text = config_path().read_text()
    assert "option max_flows 'auto'" in text
    shipped = config.load(str(config_path()))
    assert shipped.meter.max_flows == 32768 and "nf_conntrack_max 16384" in shipped.max_flows_auto
    assert shipped.meter.max_flows_ipv6 == "auto"
    assert MeterSettings().max_flows == 65536


def config_path():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent / "files" / "etc" / "config" / "flowprobe"


# ---- what reading the config (and starting the daemon's modules) imports ----

HEAVY = ("flowprobe.export.collectors", "flowprobe.export.transport", "flowprobe.export.ipfix",
         "flowprobe.export.netflow9", "flowprobe.export.spool", "flowprobe.store.writer",
         "flowprobe.store.query", "flowprobe.store.sink", "flowprobe.report",
         "flowprobe.enrich.stage", "sqlite3", "jinja2", "dataclasses", "inspect", "difflib")


def imported_after(code):
    done = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                           "print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_reading_the_config_imports_no_exporter_store_or_report():
    modules = imported_after("from flowprobe import config\n"
                             f"config.load({str(config_path())!r})")
    assert "flowprobe.config" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_the_daemon_without_history_carries_no_sqlite_or_report():
    modules = imported_after("import flowprobe.daemon")
    unused = {"flowprobe.store.writer", "flowprobe.store.query", "flowprobe.store.sink",
              "flowprobe.report", "sqlite3", "jinja2", "dataclasses", "inspect", "difflib"}
    assert not modules & unused, sorted(modules & unused)


def test_read_imports_no_exporter_without_export():
    modules = imported_after("import sys\nfrom flowprobe.cli import build_parser, _modules_for\n"
                             "argv = ['read', '/dev/null']\n"
                             "build_parser(_modules_for(argv)).parse_args(argv)")
    assert "flowprobe.cli.read" in modules
    exporters = {m for m in modules if m.startswith(("flowprobe.export", "flowprobe.control"))}
    assert not exporters and "shutil" not in modules, sorted(exporters)


def test_the_daemon_and_the_cli_need_no_urllib():
    """python3-urllib (with the email package) is not in the package's DEPENDS:
    nothing the daemon or a verb imports may pull it in, pathlib included (it
    imports urllib.parse on Python 3.11, OpenWrt 24.10's)."""
    modules = imported_after("import flowprobe.daemon, flowprobe.logs, flowprobe.control.ubus\n"
                             "from flowprobe.cli import ALL_MODULES, build_parser\n"
                             "build_parser(ALL_MODULES)\n"
                             "from flowprobe.export import collectors, profile\n"
                             "profile.profile_from_url('ipfix://[2001:db8::1]:4739?biflow=1')\n"
                             "from flowprobe.store import service, writer, query")
    assert not {m for m in modules if m.split(".")[0] in ("urllib", "email", "pathlib")}


def test_status_says_how_auto_chose():
    from flowprobe.cli.status import _table_line
    meter = {"max_flows": 32768, "flows_active": 10, "table_fill": 0.0003, "flows_peak": 20,
             "max_flows_reason": "auto: 32768 flows (2 x nf_conntrack_max 16384)"}
    assert _table_line(meter).endswith("peak 20; auto: 2 x nf_conntrack_max 16384")
    fixed = dict(meter, max_flows_reason="option max_flows")
    assert _table_line(fixed).endswith("peak 20")


def test_the_daemons_status_states_the_capacity_and_why(tmp_path, monkeypatch):
    """What `ubus call flowprobe status` and the control socket answer: the
    same status(); the meter was built with the capacity chosen."""
    from flowprobe.daemon import Probe
    meminfo, conntrack = fake_proc(tmp_path, 128 * 1024, 16384)
    monkeypatch.setattr(table_size, "MEMINFO", meminfo)
    monkeypatch.setattr(table_size, "CONNTRACK_MAX", conntrack)
    path = tmp_path / "flowprobe.conf"
    path.write_text("config flowprobe 'main'\n\toption enabled '0'\n\toption max_flows 'auto'\n"
                    f"\toption control_socket '{tmp_path / 'control.sock'}'\n")
    probe = Probe(str(path), ubus=False)
    try:
        meter = probe.status()["meter"]
    finally:
        probe.sinks.close()
    assert meter["max_flows"] == 32768 == probe.metering.meter.settings.max_flows
    assert meter["max_flows_reason"] == "auto: 32768 flows (2 x nf_conntrack_max 16384)"
