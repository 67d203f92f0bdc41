"""The LuCI settings form refuses what the daemon refuses, in the daemon's words.

luci-app-flowprobe's validators (flowprobe/validate.js) run in node, loaded as
LuCI loads a module (tests/luci/run_validators.js), over a table of values per
option and over whole configs (every config fixture of test_config.py and the
shipped file); each verdict and each message must be config.py's.

Needs node; skipped otherwise.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowprobe import config
from flowprobe.config import ConfigError, Section, read_sections
from flowprobe.export.fields import ELEMENTS, is_reverse

ROOT = Path(__file__).parent.parent
RUNNER = ROOT / "tests" / "luci" / "run_validators.js"
FIXTURES = ROOT / "tests" / "fixtures" / "config"
SHIPPED = ROOT / "files" / "etc" / "config" / "flowprobe"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node (Debian package nodejs) "
                                                      "to run the LuCI validators")

HOST = "192.0.2.1"   # a collector needs a host; documentation address (RFC 5737)


def integers(low, high):
    return [str(low - 1) if low > 0 else "-1", str(low), str(high), str(high + 1), "abc",
            "1.5", " 5", "0x10", "007", "\uff11", "1e3", str(2**64)]


def seconds(low):
    return ["0", "0.001", "0.0009", "604800", "604800.0001", "1.", ".5", "soon", "1e3",
            "15 ", "-1", "3600.25", str(low)]


BOOLEANS = ["1", "0", "yes", "no", "on", "off", "true", "false", "enabled", "disabled",
            "True", "maybe", "2"]
DEVICES = ["eth0", "br-lan", "eth0.2", "wan", "a" * 15, "a" * 16, "eth 0", "eth/0", "eth:0",
           ".", "..", "lan\t", "\u00e9th0"]
HOSTS = ["192.0.2.10", "192.0.2.300", "192.0.2", "192.0.02.1", "0.0.0.0", "2001:db8::10",
         "::", "::1", "2001:db8::1::2", "2001:db8:0:0:0:0:0:1", "2001:db8:0:0:0:0:0:0:1",
         "1:2:3:4:5:6:7::", "::ffff:192.0.2.1", "::ffff:192.0.2.256", "fe80::1%eth0",
         "fe80::1%", "2001:db8::g", "12345::", ":1::", "collector.example.org",
         "collector.example.org.", "under_score.lan", "-bad.lan", "bad-.lan", "a..b", "123",
         "host.123", "x" * 64 + ".lan", "x" * 63 + ".lan", "host name", "h\u00f6st"]

MAIN_CASES = {
    "max_flows": integers(1, 1 << 24) + ["auto", "Auto", "automatic"],
    "max_flows_ipv6": integers(1, 1 << 24) + ["auto", "Auto", "half"],
    "max_fragments": integers(1, 1 << 20),
    "idle_timeout": seconds(0.001),
    "active_timeout": seconds(0.001),
    "unanswered_timeout": seconds(0.001),
    "fragment_timeout": seconds(0.001),
    "tcp_end_grace": seconds(0),
    "overflow": ["evict", "refuse", "Evict", "drop"],
    "biflow": BOOLEANS,
    "icmp_errors": BOOLEANS,
    "enabled": BOOLEANS,
    "promisc": BOOLEANS,
    "direction": ["in", "out", "both", "IN", "sideways"],
    "filter": ["not port 22", "tcp and\tport 80", "port 22\x01", "port\x7f", "line\nbreak"],
    "snaplen": integers(64, 262144),
    "buffer_kb": integers(0, 1 << 20),
    "log_level": ["debug", "info", "warning", "error", "verbose", "INFO"],
    "hash_seed": integers(0, 2**64 - 1),
    "user": ["flowprobe", "_fp", "fp-1.x", "1fp", "a" * 32, "a" * 33, "fp user"],
    "control_socket": ["/var/run/flowprobe.sock", "relative.sock", "/" + "s" * 106,
                       "/" + "s" * 107],
    "spool_dir": ["/var/spool/flowprobe", "spool", "/tmp/x"],
    "source": ["capture", "conntrack", "both", "pcap"],
    "conntrack_max_connections": integers(1, 1 << 24),
    "conntrack_dump_interval": seconds(1) + ["0.5"],
    "conntrack_vanish_grace": seconds(0),
    "conntrack_buffer_kb": integers(0, 1 << 20),
    "routing": BOOLEANS,
    "route_cache": integers(16, 1 << 20),
    "route_wait": seconds(0) + ["10", "10.5"],
    "devices": BOOLEANS,
    "lease_file": ["/tmp/dhcp.leases", "dhcp.leases", "/tmp/x y"],
    "dhcpv6_lease_file": ["/tmp/hosts/odhcpd", "odhcpd"],
    "prefix_file": ["/etc/flowprobe/asn.txt", "asn.txt"],
    "max_prefixes": integers(1, 1 << 24),
    "history": BOOLEANS,
    "l2_flows": BOOLEANS,
    "verify_checksums": BOOLEANS,
    "history_dir": ["/tmp/flowprobe-history", "history", "/mnt/usb/h"],
    "history_kb": integers(256, 64 * 1024 * 1024),
    "history_flush": ["1", "5", "300", "0.5", "301", "x"],
    "sampling": ["1:1", "1:100", "100", "1:0", "2:5", "1:", ":5", "1:16777215", "1:16777216",
                 "half", "1:1.5", "1:-5"],
    "sampling_algorithm": ["random", "deterministic", "Random", "hash"],
    "tunnels": ["outer", "inner", "both", "Inner"],
}
COLLECTOR_CASES = {
    "host": HOSTS,
    "port": integers(0, 65535),
    "protocol": ["ipfix", "netflow9", "netflow5", "IPFIX", "sflow"],
    "transport": ["udp", "tcp", "sctp"],
    "biflow": BOOLEANS,
    "icmp_errors": BOOLEANS,
    "enabled": BOOLEANS,
    "observation_domain": integers(0, 2**32 - 1),
    "template_refresh_seconds": integers(1, 86400),
    "template_refresh_packets": integers(1, 100000),
    "stats_interval": integers(0, 86400),
    "mtu": integers(256, 65000),
    "queue_limit": integers(1, 1000000),
    "spool_kb": integers(0, 4194304),
    "source_address": ["192.0.2.1", "2001:db8::1", "collector.lan", "192.0.2.256"],
    "group": ["a", "site-1.b_c", "g" * 64, "g" * 65, "two words", "sl/ash"],
    "counter_interval": integers(0, 3600),
}
# values that depend on other options of the same collector
COLLECTOR_COMBINATIONS = [
    ("transport", "tcp", {"protocol": "netflow9"}),
    ("transport", "tcp", {"protocol": "netflow5"}),
    ("transport", "tcp", {"protocol": "ipfix"}),
    ("biflow", "1", {"protocol": "netflow9"}),
    ("biflow", "1", {"protocol": "ipfix"}),
    ("field", ["octetDeltaCount", "packetDeltaCount"], {}),
    ("field", ["octetDeltaCount", "notAnElement"], {}),
    ("field", ["octetDeltaCount"], {"protocol": "netflow5"}),
    ("field", ["flowEndReason"], {"protocol": "netflow9"}),
    ("field", ["sourceIPv4Address"], {"protocol": "netflow9"}),
    ("field", ["reverseOctetDeltaCount"], {}),
    ("field", ["reverseOctetDeltaCount"], {"biflow": "1"}),
    ("field", ["octetDeltaCount packetDeltaCount"], {}),
    ("fields", "octetDeltaCount ipSecSPI", {"protocol": "netflow9"}),
    ("port", "4739", {"protocol": "sflow"}),        # a bad sibling hides nothing
    ("mtu", "100", {"queue_limit": "0"}),
    ("group", "g1", {"protocol": "sflow"}),
    ("field", ["octetDeltaCount"], {"protocol": "sflow"}),
    ("transport", "tcp", {"protocol": "sflow"}),
    ("counter_interval", "5", {"protocol": "sflow"}),
]
MAIN_COMBINATIONS = [
    ("interface", ["eth0", "br-lan"], {}),
    ("interface", ["eth0", "eth0"], {}),
    ("interface", ["eth0 wan"], {}),
    ("interface", ["eth/0"], {}),
    ("interface", "lan wan", {}),
    ("idle_timeout", "5", {"max_flows": "0"}),
    ("enabled", "1", {"source": "conntrack"}),
    ("enabled", "1", {"source": "both"}),
]


def option_cases():
    cases = [("flowprobe", "main", option, value, {})
             for option, values in MAIN_CASES.items() for value in values]
    cases += [("flowprobe", "main", option, value, siblings)
              for option, value, siblings in MAIN_COMBINATIONS]
    cases += [("collector", "c1", option, value, {})
              for option, values in COLLECTOR_CASES.items() for value in values]
    cases += [("collector", "c1", option, value, siblings)
              for option, value, siblings in COLLECTOR_COMBINATIONS]
    return cases


def python_option_verdict(kind, name, option, value, siblings):
    """What the daemon says about one option: True, or its message when the
    error is about that option (siblings in the table are valid on their own
    or checked later than the option)."""
    options = dict(siblings, **{option: value})
    sections = [Section("flowprobe", "main", options if kind == "flowprobe" else {})]
    if kind == "collector":
        options.setdefault("host", HOST)
        sections.append(Section("collector", name, options))
    return python_config_verdict(sections, about=option)


def python_config_verdict(sections, about=None):
    try:
        config.build(sections)
    except ConfigError as e:
        if about is None or e.option == about:
            return str(e)
    return None if about is None else True


def run_validators(request):
    result = subprocess.run([NODE, str(RUNNER)], input=json.dumps(request), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def as_json_sections(sections):
    return [{"type": s.type, "name": s.name, "options": s.options} for s in sections]


def config_fixtures():
    paths = sorted(FIXTURES.glob("*.conf")) + sorted((FIXTURES / "errors").glob("*.conf"))
    found = {SHIPPED.name + " (shipped)": read_sections(SHIPPED.read_text(), str(SHIPPED))}
    for path in paths:
        try:
            found[path.name] = read_sections(path.read_text(), str(path))
        except ConfigError:
            continue   # a syntax error: the form never writes one, libuci would refuse it
    return found


def test_every_option_value_gets_the_daemons_verdict():
    cases = option_cases()
    # the table must hold both verdicts for every option, or it proves little
    expected = [python_option_verdict(*case) for case in cases]
    for option in set(MAIN_CASES) | set(COLLECTOR_CASES):
        verdicts = {v is True for case, v in zip(cases, expected) if case[2] == option}
        assert verdicts == {True, False}, f"{option}: the table has one verdict only"
    got = run_validators({"options": [list(case) for case in cases]})["options"]
    wrong = [(case, want, have) for case, want, have in zip(cases, expected, got)
             if want != have]
    assert not wrong, "\n".join(f"{case}: daemon {want!r}, form {have!r}"
                                for case, want, have in wrong)


def test_whole_configs_get_the_daemons_first_error():
    fixtures = config_fixtures()
    assert len(fixtures) > 30
    expected = [python_config_verdict(sections) for sections in fixtures.values()]
    assert None in expected and any(expected)
    got = run_validators({"configs": [as_json_sections(s) for s in fixtures.values()]})["configs"]
    wrong = [(name, want, have) for name, want, have in zip(fixtures, expected, got)
             if want != have]
    assert not wrong, "\n".join(f"{name}: daemon {want!r}, form {have!r}"
                                for name, want, have in wrong)


# options that need a value of their kind to be judged at all, and for which
# a word of that kind's wrong shape is not enough (checked in combinations)
STRUCTURAL = {"flowprobe": {"interface"}, "collector": {"field", "fields"}}
WRONG_SHAPES = {config.INTEGER: ["abc", "-1", str(2**64), "1.5"],
                config.SECONDS: ["soon", "-1", "1e3"],
                config.BOOLEAN: ["maybe", "2"],
                config.TEXT: ["tab\there", "x" * 300],   # '' sets nothing (libuci)
                config.WORDS: ["a/b"],
                config.RATE: ["1:abc", "1:0", "-5"]}


def test_the_table_walks_every_option_the_daemon_knows():
    """Derived from the daemon's own option tables: an option the form could
    let through unchecked (spool_kb once) fails here, not on a router."""
    for kind, table in (("flowprobe", MAIN_CASES), ("collector", COLLECTOR_CASES)):
        known = set(config.SECTION_TYPES[kind]) - STRUCTURAL[kind]
        assert known <= set(table), f"{kind}: no cases for {sorted(known - set(table))}"


def test_every_option_refuses_what_the_daemon_refuses_by_its_kind():
    cases = []
    for kind, name in (("flowprobe", "main"), ("collector", "c1")):
        for option, (_, shape) in config.SECTION_TYPES[kind].items():
            if option in STRUCTURAL[kind]:
                continue
            cases += [(kind, name, option, value, {}) for value in WRONG_SHAPES[shape]]
    expected = [python_option_verdict(*case) for case in cases]
    got = run_validators({"options": [list(case) for case in cases]})["options"]
    wrong = [(case, want, have) for case, want, have in zip(cases, expected, got)
             if want != have]
    assert not wrong, "\n".join(f"{case}: daemon {want!r}, form {have!r}"
                                for case, want, have in wrong)


def test_the_fields_list_is_the_exporters():
    elements = run_validators({})["elements"]
    assert {name: (v9, reverse) for name, v9, reverse in elements} == {
        name: (element.v9_id is not None, is_reverse(name))
        for name, element in ELEMENTS.items()}


def test_the_forms_schema_is_generated_from_the_daemons_tables():
    """flowprobe/schema.js holds the options, ranges, defaults and elements
    the daemon uses, written by tools/gen_schema.py: never edited by hand."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_schema.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
