"""cli/units.py: how the command line writes numbers, times and addresses
(LuCI's status page follows the same rules)."""

import time

import pytest

from flowprobe.cli import units


def test_si_counts_and_rates():
    assert [units.si(v) for v in (0, 999, 1000, 1234, 99_949, 123_456, 1_234_567, 5e9, 2e12)] \
        == ["0", "999", "1.0 k", "1.2 k", "99.9 k", "123 k", "1.2 M", "5.0 G", "2.0 T"]
    assert [units.count(v) for v in (0, 1, 999, 1000, 65536)] == ["0", "1", "999", "1.0 k",
                                                                  "65.5 k"]
    assert units.plural(1, "flow") == "1 flow" and units.plural(2000, "packet") == "2.0 k packets"


def test_rates_in_bit_per_second_with_bytes_beside():
    assert units.bit_rate(0) == "0 bit/s"
    assert units.bit_rate(12_200) == "97.6 kbit/s"
    assert units.bit_rate(125_000_000) == "1.0 Gbit/s"
    assert units.byte_rate(12_200) == "12.2 kB/s"
    assert units.bit_rate_with_bytes(12_200) == "97.6 kbit/s (12.2 kB/s)"


def test_sizes_are_iec():
    assert [units.size(v) for v in (0, 1023, 1024, 1536, 7_133_792, 987_654_321, 2 ** 40)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "6.8 MiB", "942 MiB", "1.0 TiB"]


def test_percent_never_rounds_something_to_nothing():
    assert [units.percent(v) for v in (0, 0.0004, 0.0046, 0.5, 1)] == [
        "0.0 %", "<0.1 %", "0.5 %", "50.0 %", "100.0 %"]


def test_durations_for_people_and_for_tables():
    assert [units.duration(s) for s in (0, 59, 60, 303, 3600, 11_520, 86_400, 93_600)] == [
        "0 s", "59 s", "1 min", "5 min 3 s", "1 h", "3 h 12 min", "1 d", "1 d 2 h"]
    assert units.ago(125) == "2 min 5 s ago"
    assert [units.age(ms) for ms in (0, 59_999, 60_000, 3_725_000, 90_061_000)] == [
        "0s", "59s", "1m00s", "1h02m", "1d01h"]
    assert units.seconds_ms(12_345) == "12.345"


def test_times_are_local_iso_with_milliseconds(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    assert units.timestamp_ms(1_700_000_000_007) == "2023-11-14 22:13:20.007"
    assert units.local_time(1_700_000_000) == "2023-11-14 22:13:20"
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    assert units.timestamp_ms(1_700_000_000_007) == "2023-11-14 23:13:20.007"
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("address, port, version, text", [
    ("10.0.0.1", 80, 4, "10.0.0.1:80"),
    ("2001:db8::1", 443, 6, "[2001:db8::1]:443"),
    ("::ffff:1.2.3.4", 53, 6, "[::ffff:1.2.3.4]:53"),
    ("::1", 0, None, "[::1]:0"),
])
def test_endpoints_bracket_ipv6(address, port, version, text):
    assert units.endpoint(address, port, version) == text


def flow(protocol, dst_port, version=4, src_port=0):
    return {"protocol": protocol, "ip_version": version, "src_addr": "a", "dst_addr": "b",
            "src_port": src_port, "dst_port": dst_port}


def test_flow_ends_name_icmp_types():
    assert units.flow_ends(flow(1, 8 * 256)) == ("a", "b echo request")
    assert units.flow_ends(flow(1, 3 * 256 + 3)) == ("a", "b port unreachable")
    assert units.flow_ends(flow(1, 11 * 256)) == ("a", "b TTL exceeded")
    assert units.flow_ends(flow(58, 128 * 256, 6)) == ("a", "b echo request")
    assert units.flow_ends(flow(58, 1 * 256 + 4, 6)) == ("a", "b port unreachable")
    assert units.flow_ends(flow(58, 3 * 256, 6)) == ("a", "b hop limit exceeded")
    assert units.flow_ends(flow(1, 8 * 256 + 5)) == ("a", "b echo request, code 5")
    assert units.flow_ends(flow(1, 42 * 256 + 1)) == ("a", "b type 42, code 1")
    assert units.flow_ends(flow(47, 0)) == ("a", "b")           # no ports
    assert units.flow_ends(flow(17, 53, 4, 1000)) == ("a:1000", "b:53")


def test_tcp_flags_as_letters():
    assert units.tcp_flags(0x02) == "......S."
    assert units.tcp_flags(0x12) == "...A..S."
    assert units.tcp_flags(0x1B) == "...AP.SF"
    assert units.tcp_flags(0xFF) == "CEUAPRSF"
    assert units.tcp_flags(0x1B, protocol=17) == ""


def test_protocol_and_end_reason_names():
    assert [units.protocol_name(p) for p in (1, 6, 17, 58, 136, 99)] == [
        "ICMP", "TCP", "UDP", "ICMPv6", "UDP-Lite", "99"]
    assert [units.end_reason(r) for r in ("idle_timeout", "active_timeout", "end_of_flow",
                                          "forced_end", "lack_of_resources", "7")] == [
        "idle", "active", "end", "forced", "evicted", "7"]


def test_capability_names():
    assert units.capabilities([12, 13]) == "CAP_NET_ADMIN CAP_NET_RAW"
    assert units.capabilities([]) == "none"
    assert units.capabilities(list(range(41))) == "all"
    assert units.capabilities([n for n in range(41) if n != 24]) == "all but CAP_SYS_RESOURCE"
    assert units.capabilities([13, 63]) == "CAP_NET_RAW CAP_63"


def test_table_and_shorten():
    assert units.table(("A", "NUMBER"), [("x", 1), ("yy", 22)], right=(1,)).splitlines() == [
        "A   NUMBER", "x        1", "yy      22"]
    assert units.shorten("[2001:db8:100::1d]:40029", 24) == "[2001:db8:100::1d]:40029"
    assert units.shorten("[2001:db8:100::1d]:40029", 12) == "[2001…:40029"
    assert len(units.shorten("[2001:db8:100::1d]:40029", 9)) == 9
