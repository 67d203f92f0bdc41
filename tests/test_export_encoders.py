"""Encoders and profiles on their own: sizes, sequences, splits, groups, errors.
What the messages mean is checked by real collectors in test_export_collectors.py."""

import struct

import pytest

from flowprobe._cmeter_ffi import ffi
from flowprobe.export.collectors import CollectorProfile, Exporter, ProfileError, profile_from_url
from flowprobe.export.fields import DEFAULT_FIELDS, ELEMENTS, REVERSE_FIELDS
from flowprobe.export.ipfix import IpfixEncoder
from flowprobe.export.netflow5 import Netflow5Encoder
from flowprobe.export.netflow9 import Netflow9Encoder

NOW = 1_700_000_100_000


def make_records(count, ip_version=4, packets=3, octets=300, reverse_packets=0):
    records = ffi.new("struct fp_record[]", count)
    for i in range(count):
        r = records[i]
        r.ip_version, r.protocol = ip_version, 17
        r.src_addr[0:4] = [10, 0, i >> 8 & 0xFF, i & 0xFF]
        r.dst_addr[0:4] = [192, 0, 2, 1]
        if ip_version == 6:
            r.src_addr[0:2] = [0x20, 0x01]
        r.src_port, r.dst_port = 1000 + i % 60000, 53
        r.packets, r.octets = packets, octets
        r.reverse_packets, r.reverse_octets = reverse_packets, reverse_packets * 100
        r.flow_start_ms, r.flow_end_ms = NOW - 5000, NOW - 1000
        r.end_reason = 1
    return records


def test_ipfix_messages_respect_the_mtu_and_count_records():
    encoder = IpfixEncoder(DEFAULT_FIELDS, mtu=512)
    records = make_records(500)
    messages = encoder.encode(records, 500, NOW)
    assert all(len(m) <= 512 for m, _ in messages)
    assert sum(n for _, n in messages) == 500
    # the header's length is the message length; sequences count data records before
    sequence = 0
    for message, count in messages:
        version, length, export_time, seq, domain = struct.unpack("!HHIII", message[:16])
        assert (version, length, export_time) == (10, len(message), NOW // 1000)
        assert seq == sequence
        sequence += count
    assert encoder.sequence == 500


def test_ipfix_templates_first_then_refreshed_by_count_and_time():
    encoder = IpfixEncoder(DEFAULT_FIELDS, template_refresh_messages=5, template_refresh_seconds=60)
    first = encoder.encode(make_records(1), 1, NOW)
    assert struct.unpack("!H", first[0][0][16:18])[0] == 2  # a template set leads
    for _ in range(4):
        assert not encoder.templates_due(NOW)
        encoder.encode(make_records(1), 1, NOW)
    assert encoder.templates_due(NOW)  # the 5th message since the templates
    encoder.template_messages(NOW)
    assert not encoder.templates_due(NOW + 59_000) and encoder.templates_due(NOW + 60_000)


def test_ipfix_reliable_transport_sends_templates_once():
    encoder = IpfixEncoder(DEFAULT_FIELDS, reliable=True, template_refresh_messages=1)
    encoder.encode(make_records(1), 1, NOW)
    assert not encoder.templates_due(NOW + 10**9)
    encoder.reset()
    assert encoder.templates_due(NOW)


def test_uniflow_profile_of_a_biflow_meter_gets_both_directions():
    records = make_records(10, reverse_packets=2)
    records[3].reverse_packets = 0
    uniflow = IpfixEncoder(DEFAULT_FIELDS)
    biflow = IpfixEncoder(DEFAULT_FIELDS + REVERSE_FIELDS, biflow=True)
    assert sum(n for _, n in uniflow.encode(records, 10, NOW, meter_biflow=True)) == 19
    assert sum(n for _, n in biflow.encode(records, 10, NOW, meter_biflow=True)) == 10


def test_netflow9_sequence_counts_packets_and_flowsets_are_padded():
    encoder = Netflow9Encoder(DEFAULT_FIELDS[:3] + ("protocolIdentifier",), boot_ms=NOW - 10_000)
    messages = encoder.encode(make_records(3, ip_version=6), 3, NOW)
    for n, (message, _) in enumerate(messages):
        version, count, uptime, secs, sequence, source = struct.unpack("!HHIIII", message[:20])
        assert (version, uptime, sequence) == (9, 11_000, n)  # zero: a second before boot
        offset = 20
        while offset < len(message):
            flowset_length = struct.unpack("!H", message[offset + 2:offset + 4])[0]
            assert flowset_length % 4 == 0
            offset += flowset_length
        assert offset == len(message)


def test_netflow5_splits_counters_beyond_32_bits_exactly():
    records = make_records(2, packets=5, octets=2**33 + 7)
    encoder = Netflow5Encoder(boot_ms=NOW - 60_000)
    messages = encoder.encode(records, 2, NOW)
    flows = []
    for message, count in messages:
        assert struct.unpack("!H", message[2:4])[0] == count
        for i in range(count):
            record = message[24 + 48 * i:24 + 48 * (i + 1)]
            flows.append(struct.unpack("!II", record[16:24]))  # dPkts, dOctets
    assert sum(p for p, _ in flows) == 10 and sum(o for _, o in flows) == 2 * (2**33 + 7)
    assert all(o < 2**32 for _, o in flows) and len(flows) == 6


def test_netflow5_counts_ipv6_as_not_exportable():
    encoder = Netflow5Encoder()
    assert encoder.encode(make_records(4, ip_version=6), 4, NOW) == []
    assert encoder.records_not_exportable == 4


def test_netflow5_datagrams_hold_at_most_30_records():
    messages = Netflow5Encoder(mtu=9000).encode(make_records(100), 100, NOW)
    assert [n for _, n in messages] == [30, 30, 30, 10]


@pytest.mark.parametrize("url, option", [
    ("jflow://10.0.0.1:2055", "protocol"),
    ("ipfix://10.0.0.1:99999", "port"),
    ("netflow9://10.0.0.1?biflow=1", "biflow"),
    ("netflow5://10.0.0.1?transport=tcp", "transport"),
    ("ipfix://10.0.0.1?fields=sourceIPv4Address,nonsense", "fields"),
    ("netflow9://10.0.0.1?fields=flowEndReason", "fields"),
    ("netflow5://10.0.0.1?fields=octetDeltaCount", "fields"),
    ("ipfix://10.0.0.1?fields=reverseOctetDeltaCount", "fields"),
    ("ipfix://10.0.0.1?colour=blue", "colour"),
    ("ipfix://10.0.0.1?mtu=big", "mtu"),
])
def test_bad_profiles_name_the_option(url, option):
    with pytest.raises(ProfileError) as raised:
        profile_from_url(url)
    assert raised.value.option == option and option in str(raised.value)


def test_profile_from_url():
    p = profile_from_url("ipfix://[::1]:4740?biflow=1&transport=tcp&domain=7&group=a&"
                         "fields=sourceIPv6Address,destinationIPv6Address,octetDeltaCount")
    assert (p.host, p.effective_port, p.transport, p.biflow, p.observation_domain, p.group) == \
        ("::1", 4740, "tcp", True, 7, "a")
    assert p.field_names == ("sourceIPv6Address", "destinationIPv6Address", "octetDeltaCount")
    assert profile_from_url("netflow9://h").effective_port == 2055
    assert all(ELEMENTS[n].v9_id for n in profile_from_url("netflow9://h").field_names)


def test_group_members_take_turns(monkeypatch):
    """Records of a group are split round-robin, across batches too."""
    profiles = [CollectorProfile("127.0.0.1", 9, group="g"), CollectorProfile("127.0.0.1", 9,
                                                                             group="g"),
                CollectorProfile("127.0.0.1", 9)]
    exporter = Exporter(profiles, boot_ms=NOW)
    exporter.start(NOW)  # templates and statistics, before counting
    sent = {id(c): 0 for c in exporter.collectors}
    for collector in exporter.collectors:
        def send(message, records, collector=collector):
            sent[id(collector)] += records
            return True
        monkeypatch.setattr(collector.transport, "send", send)
    for size in (3, 4, 5):
        exporter.export(make_records(size), size, NOW)
    first, second, alone = (sent[id(c)] for c in exporter.collectors)
    assert (first, second, alone) == (6, 6, 12)
    exporter.close()


# ---- NetFlow v9 / v5 times: what collectors compute, exact to the millisecond ----

def _collector_times(header_uptime, unix_secs, uptimes):
    """What nfdump, pmacct and tshark compute: unix_secs * 1000 - sysUptime + uptime."""
    return [unix_secs * 1000 - header_uptime + u for u in uptimes]


@pytest.mark.parametrize("now_ms", [NOW, NOW + 1, NOW + 598, NOW + 999])
def test_netflow9_times_are_exact_whatever_the_sub_second_of_the_export(now_ms):
    boot = NOW - 10_000
    records = make_records(2)
    records[0].flow_start_ms, records[0].flow_end_ms = boot, now_ms   # the first ms, the last
    records[1].flow_start_ms, records[1].flow_end_ms = boot - 5000, boot + 7   # before zero
    encoder = Netflow9Encoder(("sourceIPv4Address", "flowStartMilliseconds",
                               "flowEndMilliseconds"), boot_ms=boot)
    message, _ = encoder.encode(records, 2, now_ms)[-1]   # after the templates
    _, _, uptime, secs, _, _ = struct.unpack("!HHIIII", message[:20])
    values = struct.unpack("!4xII4xII", message[24:24 + 24])
    assert 0 not in values                         # nfdump shows 1970 for uptime 0
    assert max(values) <= uptime                   # never after the header's instant
    starts_ends = _collector_times(uptime, secs, values)
    # older than the uptime zero (a second before boot): its first millisecond
    assert starts_ends == [boot, now_ms, boot - 999, boot + 7]


@pytest.mark.parametrize("now_ms", [NOW, NOW + 1, NOW + 598, NOW + 999])
def test_netflow5_times_are_exact_without_nanoseconds(now_ms):
    boot = NOW - 60_000
    records = make_records(1)
    records[0].flow_start_ms, records[0].flow_end_ms = boot, now_ms - 3
    (message, _), = Netflow5Encoder(boot_ms=boot).encode(records, 1, now_ms)
    _, _, uptime, secs, nsecs = struct.unpack("!HHIII", message[:16])
    first, last = struct.unpack("!II", message[24 + 24:24 + 32])
    assert nsecs == 0 and 0 not in (first, last) and last <= uptime
    assert _collector_times(uptime, secs, (first, last)) == [boot, now_ms - 3]
