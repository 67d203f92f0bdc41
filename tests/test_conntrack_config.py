"""The conntrack source's options: strict checks naming section, option and
value; what collectors get when conntrack records flow. No root needed."""

import pytest

from flowprobe import config
from flowprobe.export.collectors import CollectorProfile
from flowprobe.export.fields import DEFAULT_FIELDS, NAT_FIELDS, with_nat_fields


def parse(options, interfaces=("lan",)):
    lines = ["config flowprobe 'main'", "\toption enabled '1'"]
    lines += [f"\toption {key} '{value}'" for key, value in options.items()]
    lines += [f"\tlist interface '{name}'" for name in interfaces]
    return config.parse("\n".join(lines) + "\n")


def test_capture_is_the_default():
    parsed = parse({})
    assert parsed.conntrack.source == "capture" and parsed.interfaces


@pytest.mark.parametrize("option, value, allowed", [
    ("source", "netlink", "capture, conntrack, both"),
    ("conntrack_max_connections", "0", "an integer from 1 to 16777216"),
    ("conntrack_dump_interval", "0.5", "seconds from 1 to 604800"),
    ("conntrack_buffer_kb", "lots", "an integer from 0 to 1048576"),
])
def test_a_bad_value_names_section_option_and_value(option, value, allowed):
    with pytest.raises(config.ConfigError) as error:
        parse({option: value})
    message = str(error.value)
    assert f"flowprobe.main.{option}" in message and repr(value) in message
    assert allowed in message


def test_conntrack_alone_needs_no_interface_and_ignores_listed_ones():
    assert parse({"source": "conntrack"}, interfaces=()).interfaces == ()
    parsed = parse({"source": "conntrack"})
    assert parsed.interfaces == ()
    assert any("not captured with source 'conntrack'" in w for w in parsed.warnings)


def test_both_still_needs_an_interface():
    with pytest.raises(config.ConfigError, match="interface"):
        parse({"source": "both"}, interfaces=())


def test_collectors_get_the_nat_fields_their_protocol_carries():
    ipfix, v9, v5 = (CollectorProfile(host="192.0.2.1", protocol=p)
                     for p in ("ipfix", "netflow9", "netflow5"))
    own = CollectorProfile(host="192.0.2.1", fields=("sourceIPv4Address",))
    adjusted = with_nat_fields([ipfix, v9, v5, own])
    assert adjusted[0].field_names == DEFAULT_FIELDS + NAT_FIELDS
    assert set(NAT_FIELDS) - {"flowId"} <= set(adjusted[1].field_names)
    assert "flowId" not in adjusted[1].field_names   # NetFlow v9 has no flowId
    assert adjusted[2] == v5 and adjusted[3] == own
