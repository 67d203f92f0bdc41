"""Hypothesis over the two other ways in besides packets: the config file
and the control API's arguments.  Whatever arrives, the answer is a value
or the module's own error with a message; never another exception (which
in the daemon would be a reload that dies or a control call that
crashes the loop)."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowprobe import config
from flowprobe.control.handlers import ControlError, Handlers
from test_control import MeterProbe

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

OPTION_NAMES = sorted({name for spec in config.SECTION_TYPES.values() for name in spec})
VALUES = st.one_of(
    st.sampled_from(["0", "1", "yes", "off", "-1", "65536", "0.5", "1e3", "nan", "inf",
                     "lan", "eth0.2", "br-lan", "127.0.0.1", "::1", "ipfix", "netflow9",
                     "v5", "tcp", "udp", "evict", "refuse", "both", "in", "out", "not port 22",
                     "/var/run/x.sock", "nobody", "a b", "'", "\\", "\x00", "é", " "]),
    st.text(max_size=12))


def quoted(value):
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def uci_texts(draw):
    """Files that look like flowprobe's, and some that only start to."""
    lines = [draw(st.sampled_from(["config flowprobe 'main'", "config flowprobe",
                                   "package flowprobe", ""]))]
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["option", "option", "list", "config", "junk"]))
        if kind == "config":
            section_type = draw(st.sampled_from(["interface", "collector", "flowprobe", "x"]))
            name = draw(st.sampled_from(["", " 'lan'", " 'c1'", " 'main'", " 'bad name'"]))
            lines.append(f"config {section_type}{name}")
        elif kind == "junk":
            lines.append(draw(st.text(max_size=20)))
        else:
            option = draw(st.sampled_from(OPTION_NAMES + ["unknown_option", "interfaces"]))
            lines.append(f"\t{kind} {option} {quoted(draw(VALUES))}")
    return "\n".join(lines) + "\n"


@SETTINGS
@given(uci_texts())
def test_any_config_text_gives_a_config_or_a_config_error(text):
    try:
        parsed = config.parse(text, "fuzz.conf")
    except config.ConfigError as e:
        assert str(e).strip(), "an error without a message"
        return
    assert isinstance(parsed, config.Config)
    if parsed.enabled:
        assert parsed.interfaces


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_file_are_refused_or_read(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "flowprobe"
    path.write_bytes(data)
    try:
        config.load(str(path))
    except config.ConfigError as e:
        assert str(e).strip()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=20) | st.sampled_from(["tcp", "udp", "10.1.0.1", "10.0.0.0/8",
                                               "2001:db8::/32", "eth0", "bytes", "age"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6)
ARGUMENT_KEYS = st.sampled_from(["address", "port", "protocol", "interface", "sort", "limit",
                                 "x", ""])


@settings(SETTINGS, max_examples=150)
@given(st.sampled_from(list(Handlers.METHODS) + ["nope", ""]),
       st.one_of(st.none(), st.dictionaries(ARGUMENT_KEYS, JSON_VALUES, max_size=4),
                 JSON_VALUES))
def test_any_control_call_gives_an_object_or_a_control_error(method, arguments):
    handlers = Handlers(MeterProbe())
    try:
        result = handlers.call(method, arguments)
    except ControlError as e:
        assert str(e).strip()
        return
    assert isinstance(result, dict)
    json.dumps(result)
