"""flowprobe.config: UCI text to a checked Config.

One reader (the strict parser) on OpenWrt as everywhere; where the uci
command exists (OpenWrt, or OPENWRT_SRC's build), every fixture is also
exported by libuci and must read back the same.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flowprobe import config
from flowprobe.config import Config, ConfigError, InterfaceConfig, Section, read_sections
from flowprobe.export.collectors import CollectorProfile
from flowprobe.export.fields import ELEMENTS
from flowprobe.frozen import replace
from flowprobe.settings import MeterSettings

FIXTURES = Path(__file__).parent / "fixtures" / "config"
ERRORS = FIXTURES / "errors"
SHIPPED = Path(__file__).parent.parent / "files" / "etc" / "config" / "flowprobe"

# ---- the two ways in: text, and a file ----

def read_strict(path, tmp_path):
    return config.parse(path.read_text(), str(path))


def read_file(path, tmp_path):
    # as the daemon reads it: the committed file, by load()
    copy = tmp_path / "flowprobe_fixture"
    shutil.copyfile(path, copy)
    return config.load(str(copy))


@pytest.fixture(params=[pytest.param(read_strict, id="text"),
                        pytest.param(read_file, id="file")])
def read(request, tmp_path):
    def reader(path):
        return request.param(path, tmp_path)
    reader.source = (lambda path: str(path)) if request.param is read_strict else \
        (lambda path: str(tmp_path / "flowprobe_fixture"))
    return reader


def profile(name="", **values):
    return CollectorProfile(name=name, **values)


# ---- valid files ----

def test_shipped_file_parses_and_is_disabled(read):
    shipped = read(SHIPPED)
    # the values that are not the code's defaults: on OpenWrt the package
    # creates the user, elsewhere the daemon stays as started; and the table
    # is sized for the router (max_flows 'auto', table_size.py)
    from flowprobe.table_size import auto_max_flows
    capacity, why = auto_max_flows()
    assert shipped == Config(enabled=False, meter=MeterSettings(max_flows=capacity),
                             interfaces=(InterfaceConfig("lan"),), collectors=(),
                             user="flowprobe", max_flows_auto=why)


def test_shipped_file_documents_every_option_and_its_defaults_are_the_codes():
    text = SHIPPED.read_text()
    for spec in config.SECTION_TYPES.values():
        for option in spec:
            assert re.search(rf"(?<!\w){option}(?!\w)", text), f"{option} is not documented"
    sections = read_sections(text, str(SHIPPED))
    [example] = [s for s in sections if s.type == "collector"]
    assert example.options["enabled"] == "0"
    example.options["enabled"] = "1"
    [collector] = config.build(sections).collectors
    assert collector == CollectorProfile(host="192.0.2.10", port=4739)
    assert collector.name == "example"


def test_full(read):
    full = read(FIXTURES / "full.conf")
    main_capture = dict(bpf_filter="not port 22", promiscuous=True, direction="both",
                        snaplen=256, buffer_kb=4096)
    assert full == Config(
        enabled=True,
        meter=MeterSettings(max_flows=131072, max_fragments=8192, idle_timeout=10.5,
                            active_timeout=120.0, unanswered_timeout=3.0, tcp_end_grace=0.0,
                            fragment_timeout=20.0, overflow_policy="refuse",
                            bidirectional=True, hash_seed=12345),
        interfaces=(
            InterfaceConfig("lan", device="br-lan", bpf_filter="not host 192.0.2.1",
                            promiscuous=False, direction="in", snaplen=128, buffer_kb=0),
            InterfaceConfig("wan", **main_capture),
            InterfaceConfig("eth0.2", **dict(main_capture, direction="out")),
        ),
        collectors=(
            profile(host="192.0.2.10", port=4740, protocol="ipfix", transport="tcp",
                    fields=("sourceIPv4Address", "destinationIPv4Address", "octetDeltaCount",
                            "reverseOctetDeltaCount"),
                    biflow=True, observation_domain=7, template_refresh_seconds=30,
                    template_refresh_packets=10, stats_interval=300, mtu=1200,
                    source_address="192.0.2.1", group="", queue_limit=512),
            profile(host="collector.example.net", protocol="netflow9", group="v9",
                    fields=("sourceIPv6Address", "destinationIPv6Address", "packetDeltaCount")),
            profile(host="2001:db8::10", port=9995, protocol="netflow5", group="v9"),
        ),
        log_level="debug",
        control_socket="/tmp/flowprobe-test.sock",
    )
    # named collectors keep their section's name; anonymous ones are labelled by URL
    assert [c.name for c in full.collectors] == ["nfcapd", "", ""]
    assert full.collectors[1].label == "netflow9://collector.example.net:2055"


def test_minimal(read):
    assert read(FIXTURES / "minimal.conf") == Config(
        enabled=True, meter=MeterSettings(), interfaces=(InterfaceConfig("eth0"),),
        collectors=())


def test_empty_main_section_is_disabled_with_every_default(read):
    assert read(FIXTURES / "minimal_disabled.conf") == Config(
        enabled=False, meter=MeterSettings(), interfaces=(), collectors=())


def test_anonymous_main_section_and_interfaces_in_one_option(read):
    got = read(FIXTURES / "anonymous_main.conf")
    assert got.enabled is True
    assert [i.name for i in got.interfaces] == ["lan", "wan"]
    assert got.collectors == (profile(host="192.0.2.10"),)


def test_quoting(read):
    got = read(FIXTURES / "quoting.conf")
    assert got.enabled is True
    assert got.log_level == "warning"
    assert got.control_socket == "/var/run/it's.sock"
    assert got.meter == MeterSettings(max_flows=1000, active_timeout=60.0, tcp_end_grace=1.0)
    assert got.interfaces == (
        InterfaceConfig("lan", bpf_filter='not src host "192.0.2.7" or port 53'),
        InterfaceConfig("wan", bpf_filter="not host 192.0.2.1 and not port 22 # kept: quoted"),
    )
    assert got.warnings == ()


def test_sections_merge_as_libuci_merges_them(read):
    got = read(FIXTURES / "merge.conf")
    assert [i.name for i in got.interfaces] == ["lan", "wan"]
    assert got.meter == MeterSettings(max_flows=2000, idle_timeout=30.0)
    assert got.collectors == (profile(host="192.0.2.10", protocol="netflow9", group="g2",
                                      fields=("sourceIPv4Address", "destinationIPv4Address")),)


def test_unknown_sections_and_options_are_warnings(read):
    got = read(FIXTURES / "warnings.conf")
    assert got.warnings == (
        "flowprobe.old: unknown section type 'exporter', ignored "
        "(known: flowprobe, interface, collector)",
        "flowprobe.main.bidirectional: unknown option, ignored (did you mean biflow?)",
        "flowprobe.main.idle_timout: unknown option, ignored (did you mean idle_timeout?)",
        "flowprobe.main.colour: unknown option, ignored",
        "flowprobe.wan: interface 'wan' is not in flowprobe.main.interface; section ignored",
        "flowprobe.@interface[2]: names no interface (no option name); section ignored",
        "flowprobe.lan.promiscuous: unknown option, ignored (did you mean promisc?)",
        "flowprobe.@collector[0].adress: unknown option, ignored",
    )
    # what was ignored left the defaults
    assert got.meter == MeterSettings()
    assert got.interfaces == (InterfaceConfig("lan"),)


# ---- errors: one fixture each, every message exact ----

BOOLEANS = "1 or 0 (also yes/no, on/off, true/false, enabled/disabled)"
DEVICE = "an interface name: 1 to 15 characters, no spaces, '/' or ':'"
HOST = "an IPv4 or IPv6 address or a host name"

# fixture: (section, option, value, allowed); the message is
# "flowprobe.SECTION.OPTION: invalid value VALUE (allowed: ALLOWED)"
INVALID = {
    "main_idle_timeout": ("main", "idle_timeout", "abc", "seconds from 0.001 to 604800"),
    "main_tcp_end_grace": ("main", "tcp_end_grace", "-1", "seconds from 0 to 604800"),
    "main_max_flows": ("main", "max_flows", "0", "an integer from 1 to 16777216 or auto"),
    "main_max_fragments": ("main", "max_fragments", "1e3", "an integer from 1 to 1048576"),
    "main_overflow": ("main", "overflow", "drop", "evict or refuse"),
    "main_enabled": ("main", "enabled", "maybe", BOOLEANS),
    "main_biflow": ("main", "biflow", "True", BOOLEANS),
    "main_hash_seed": ("main", "hash_seed", "18446744073709551616",
                       "an integer from 0 to 18446744073709551615"),
    "main_scalar_as_list": ("main", "max_flows", ["1000", "2000"],
                            "one value (option max_flows, not list)"),
    "main_interface_name": ("main", "interface", "a-very-long-name", DEVICE),
    "main_interface_twice": ("main", "interface", "lan", "each interface once"),
    "main_snaplen": ("main", "snaplen", "32", "bytes from 64 to 262144"),
    "main_buffer_kb": ("main", "buffer_kb", "2097152",
                       "0 (libpcap's default) or kilobytes up to 1048576"),
    "main_direction": ("main", "direction", "inbound", "in, out, both"),
    "main_log_level": ("main", "log_level", "verbose", "debug, info, warning, error"),
    "main_control_socket": ("main", "control_socket", "flowprobe.sock",
                            "an absolute path of at most 107 bytes"),
    "interface_direction": ("lan", "direction", "ingress", "in, out, both"),
    "interface_device": ("lan", "device", "eth0/1", DEVICE),
    "interface_promisc": ("@interface[0]", "promisc", "2", BOOLEANS),
    "collector_host": ("nfcapd", "host", "192.0.2.300", HOST),
    "collector_port": ("nfcapd", "port", "70000", "1 to 65535"),
    "collector_anonymous_port": ("@collector[1]", "port", "http", "1 to 65535"),
    "collector_protocol": ("nfcapd", "protocol", "jflow", "ipfix or netflow9 or netflow5 or sflow"),
    "collector_transport": ("nfcapd", "transport", "tcp", "udp (tcp is for ipfix only)"),
    "collector_biflow": ("nfcapd", "biflow", "1", "false (RFC 5103 biflows are IPFIX only)"),
    "collector_field": ("nfcapd", "field", "flowColour",
                        "names from: " + " ".join(sorted(ELEMENTS))),
    "collector_reverse_field": ("nfcapd", "fields", "reverseOctetDeltaCount",
                                "reverse elements with biflow only"),
    "collector_source_address": ("nfcapd", "source_address", "lan",
                                 "an IPv4 or IPv6 address of this host, or empty"),
    "collector_group": ("nfcapd", "group", "my group",
                        "a name of at most 64 letters, digits, '_', '.' or '-'"),
    "collector_mtu": ("nfcapd", "mtu", "100", "256 to 65000"),
    "collector_template_refresh": ("nfcapd", "template_refresh_seconds", "0", "1 to 86400"),
    # a disabled collector is checked too: enabling it later cannot break a reload
    "collector_disabled_checked": ("nfcapd", "queue_limit", "0", "1 to 1000000"),
}

# fixture: (section, option, the message after "flowprobe.SECTION[.OPTION]: ")
OTHER = {
    "main_sampling_differs": ("main", "sampling", "differs between interfaces (1:10 and 1:100; "
                              "allowed: one rate for all while an IPFIX or NetFlow collector is "
                              "configured, as collectors scale every record by one interval)"),
    "main_sampling_conntrack": ("main", "sampling", "1:100 with source 'both' (allowed: 1:1 with "
                                "conntrack, whose records are whole: a collector would scale "
                                "them too)"),
    "no_main": ("main", None, "missing (add: config flowprobe 'main')"),
    "two_mains": ("other", None,
                  "a second flowprobe section (allowed: one; flowprobe.main is the first)"),
    "main_no_interface": ("main", "interface", "missing (required when enabled: at least one, "
                                               "as list interface 'lan')"),
    "interface_twice": ("@interface[1]", None, "a second section for interface 'lan' "
                                               "(allowed: one; flowprobe.lan is for it)"),
    "collector_no_host": ("nfcapd", "host", f"missing (required: {HOST})"),
    "collector_fields_twice": ("nfcapd", "fields", "also given as field (allowed: one of them)"),
}

# fixture: (line, the message after "FILE line N: ")
SYNTAX = {
    "syntax_option_outside_section": (2, "option outside a section"),
    "syntax_unknown_command": (
        4, "unknown command 'optoin' (allowed: config, option, list, package)"),
    "syntax_unterminated_quote": (4, "unterminated ' quote"),
    "syntax_too_many_words": (4, "too many words after option (quote a value that holds spaces)"),
    "syntax_section_name": (5, "invalid section name 'br-lan' (allowed: letters, digits and _)"),
    "syntax_option_name": (4, "invalid option name 'max-flows' (allowed: letters, digits and _)"),
    "syntax_type_clash": (5, "section 'main' given again with another type "
                             "('collector'; it was 'flowprobe' at line 1)"),
    "syntax_config_without_type": (1, "config without a section type"),
}


def test_every_error_fixture_has_its_expected_message():
    on_disk = {path.stem for path in ERRORS.glob("*.conf")}
    assert on_disk == set(INVALID) | set(OTHER) | set(SYNTAX)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_value(read, name):
    section, option, value, allowed = INVALID[name]
    with pytest.raises(ConfigError) as raised:
        read(ERRORS / f"{name}.conf")
    error = raised.value
    where = f"flowprobe.{section}.{option}"
    assert str(error) == f"{where}: invalid value {value!r} (allowed: {allowed})"
    assert (error.section, error.option, error.value, error.allowed) == \
        (section, option, value, allowed)


@pytest.mark.parametrize("name", sorted(OTHER))
def test_section_errors(read, name):
    section, option, problem = OTHER[name]
    with pytest.raises(ConfigError) as raised:
        read(ERRORS / f"{name}.conf")
    where = f"flowprobe.{section}" + (f".{option}" if option else "")
    assert str(raised.value) == f"{where}: {problem}"
    assert (raised.value.section, raised.value.option) == (section, option)


@pytest.mark.parametrize("name", sorted(SYNTAX))
def test_syntax_errors(read, name):
    line, problem = SYNTAX[name]
    path = ERRORS / f"{name}.conf"
    with pytest.raises(ConfigError) as raised:
        read(path)
    assert str(raised.value) == f"{read.source(path)} line {line}: {problem}"
    assert raised.value.line == line


# ---- the strict parser's syntax, case by case ----

@pytest.mark.parametrize("text, value", [
    ("option v 'plain'", "plain"),
    ("option v plain", "plain"),
    ('option v "plain"', "plain"),
    (r"option v 'it'\''s'", "it's"),                 # as `uci export` writes a quote
    (r"option v 'a\b'", r"a\b"),                      # no escapes inside '...'
    (r'option v "a\"b\\c"', 'a"b\\c'),
    (r"option v a\ b", "a b"),
    ("option v 'a'\"b\"c", "abc"),                    # words glue together
    ("option v '#not a comment'", "#not a comment"),
    ("option v a#comment", "a"),
    ("option v 'a' # comment", "a"),
    ("option v 'two\nlines'", "two\nlines"),
    ("option v \"joined \\\nline\"", "joined line"),
    ("option v 'crlf'\r\n", "crlf"),
    ("o v 'short'", "short"),
])
def test_values(text, value):
    [section] = read_sections(f"config t 's'\n{text}\n")
    assert section.options == {"v": value}


def test_commands_split_by_semicolons():
    [section] = read_sections("config t 's'; option a '1'; list b 2 ;list b '3'")
    assert section.options == {"a": "1", "b": ["2", "3"]}


def test_option_and_list_interplay():
    text = ("config t 's'\n"
            "option a 1\nlist a 2\n"          # list after option: both
            "list b 1\noption b 2\n"          # option after list: replaced
            "option c 1\noption c ''\n"       # '' sets nothing: c keeps 1
            "list d ''\n"                     # an empty list item is kept, as libuci keeps it
            "option e\n")                     # no value: nothing
    [section] = read_sections(text)
    assert section.options == {"a": ["1", "2"], "b": "2", "c": "1", "d": [""]}


def test_sections_labels_lines_and_the_package_line():
    text = ("# a comment\n\npackage flowprobe\nconfig flowprobe main\n"
            "config collector\nconfig collector 'x'\nconfig collector ''\n")
    sections = read_sections(text)
    assert [(s.type, s.name, s.line, s.label) for s in sections] == [
        ("flowprobe", "main", 4, "main"),
        ("collector", None, 5, "@collector[0]"),
        ("collector", "x", 6, "x"),
        ("collector", None, 7, "@collector[2]"),       # uci counts named ones too
    ]
    assert sections[0] == Section("flowprobe", "main", {}, 4, 0)


@pytest.mark.parametrize("text, line, problem", [
    ('config t s\noption v "open', 2, 'unterminated " quote'),
    ("config t s\nlist '' x", 2, "list without a name"),
    ("config t s\nlist", 2, "list without a name"),
    ("list a b", 1, "list outside a section"),
    ("config t s x", 1, "too many words after config (quote a value that holds spaces)"),
    ("config 't y' s", 1, "invalid section type 't y' (allowed: printable, no spaces)"),
    ("package 'a b'", 1, "invalid package name 'a b'"),
    # libuci drops the rest of such a line without a word
    ("config t s\n\noption a 1;option b 2", 3,
     "';' right after a word (libuci ignores the rest of the line; put a space before it)"),
    ("\n\nconfiguration t", 3,
     "unknown command 'configuration' (allowed: config, option, list, package)"),
])
def test_more_syntax_errors(text, line, problem):
    with pytest.raises(ConfigError) as raised:
        read_sections(text, "test.conf")
    assert str(raised.value) == f"test.conf line {line}: {problem}"


def test_an_empty_trailing_word_is_no_extra_word():
    # libuci's assert_eol ignores an empty argument
    [section] = read_sections("config t s ''\noption a 1 ''")
    assert section.options == {"a": "1"}


UCI_CLI = shutil.which("uci")


@pytest.mark.skipif(UCI_CLI is None, reason="the uci command (libuci) is not in PATH")
def test_libuci_reads_every_fixture_as_the_strict_parser_does(tmp_path):
    # `uci export` writes what libuci loaded in canonical form; read back, it
    # must hold the same sections (syntax errors: libuci refuses them too)
    (tmp_path / "save").mkdir()

    def shape(text):
        return [(s.type, s.name, s.options) for s in read_sections(text)]
    for path in sorted(FIXTURES.glob("**/*.conf")) + [SHIPPED]:
        shutil.copyfile(path, tmp_path / "flowprobe_fixture")
        exported = subprocess.run([UCI_CLI, "-c", str(tmp_path), "-P", str(tmp_path / "save"),
                                   "export", "flowprobe_fixture"], capture_output=True, text=True)
        if path.stem in SYNTAX:
            assert exported.returncode != 0, path.name
        else:
            assert exported.returncode == 0, f"{path.name}: {exported.stderr}"
            assert shape(exported.stdout) == shape(path.read_text()), path.name


# ---- values built directly ----

def test_settings_classes_check_their_values():
    with pytest.raises(config.ConfigOptionError, match="direction"):
        InterfaceConfig("lan", direction="sideways")
    with pytest.raises(config.ConfigOptionError, match="name"):
        InterfaceConfig("")
    with pytest.raises(config.ConfigOptionError, match="bpf_filter"):
        InterfaceConfig("lan", bpf_filter="port 22\0")
    with pytest.raises(config.ConfigOptionError, match="log_level"):
        Config(enabled=True, meter=MeterSettings(), interfaces=(), collectors=(),
               log_level="loud")
    with pytest.raises(config.ConfigOptionError, match="control_socket"):
        Config(enabled=True, meter=MeterSettings(), interfaces=(), collectors=(),
               control_socket="/" + "x" * 107)
    assert InterfaceConfig("eth0.2").direction == "in"


@pytest.mark.parametrize("host, good", [
    ("192.0.2.10", True), ("2001:db8::1", True), ("collector", True),
    ("nfcapd.example.net.", True), ("a_b.example", True),
    ("192.0.2.300", False), ("-bad.example", False), ("two words", False), ("x" * 64, False),
])
def test_collector_hosts(host, good):
    text = (f"config flowprobe main\nconfig collector c\noption host '{host}'\n")
    if good:
        assert config.parse(text).collectors[0].host == host
    else:
        with pytest.raises(ConfigError, match=r"^flowprobe\.c\.host: invalid value"):
            config.parse(text)


# ---- load(): files ----

def test_load_reports_unreadable_files(tmp_path):
    with pytest.raises(ConfigError) as raised:
        config.load(str(tmp_path / "absent"))
    assert str(raised.value) == f"{tmp_path / 'absent'}: cannot read it: No such file or directory"
    binary = tmp_path / "binary"
    binary.write_bytes(b"config flowprobe main\n\xff\n")
    with pytest.raises(ConfigError, match=r"binary: not UTF-8 text \(byte 22\)$"):
        config.load(str(binary))


VALID = ["full", "minimal", "minimal_disabled", "anonymous_main", "quoting", "merge", "warnings"]


def test_what_is_staged_but_not_committed_is_not_read(tmp_path):
    """libuci's readers apply /tmp/.uci's staged changes; the daemon reads
    the committed file only, so a value staged in LuCI and not applied yet
    never reaches a reload."""
    copy = tmp_path / "flowprobe"
    shutil.copyfile(FIXTURES / "minimal.conf", copy)
    staged = Path("/tmp/.uci/flowprobe")
    if staged.exists():
        pytest.skip("changes are staged for flowprobe on this machine")
    try:
        staged.parent.mkdir(exist_ok=True)
        staged.write_text("flowprobe.main.idle_timeout='soon'\n")
        assert config.load(str(copy)) == config.parse((FIXTURES / "minimal.conf").read_text())
    finally:
        staged.unlink(missing_ok=True)


def test_shipped_defaults_match_a_default_built_config():
    # the file states the defaults; leaving every option out gives the same
    stripped = "config flowprobe 'main'\n\tlist interface 'lan'\n"
    # except `user`, which the package's file sets (the user exists only there),
    # and max_flows 'auto', the router's table (the daemon's own default: 65536)
    shipped = replace(config.load(str(SHIPPED)), warnings=())
    assert shipped.user == "flowprobe" and shipped.max_flows_auto.startswith("auto: ")
    assert config.parse(stripped) == replace(shipped, user="", max_flows_auto="",
                                             meter=replace(shipped.meter, max_flows=65536))
