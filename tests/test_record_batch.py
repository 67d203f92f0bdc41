"""Messages framed in C from a whole batch (cmeter/record_batch.c) and sent
by the UDP transport straight from the list (send_all): the bytes, the
sequence numbers and the accounting are those of framing and sending one
message at a time, errors in the middle of a list included."""

import socket
import struct

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.export.encoding import header_clock, uptime_zero
from flowprobe.export.fields import DEFAULT_FIELDS
from flowprobe.export.ipfix import IpfixEncoder
from flowprobe.export.netflow5 import LAYOUT, Netflow5Encoder
from flowprobe.export.netflow9 import Netflow9Encoder
from flowprobe.export.transport import UdpTransport

NOW = 1_700_000_100_123


def records(count):
    batch = ffi.new("struct fp_record[]", count)
    for i in range(count):
        r = batch[i]
        r.ip_version, r.protocol = (4, 6) if i % 3 else (6, 17)
        r.src_addr[0:4] = [10, 0, i >> 8 & 0xFF, i & 0xFF]
        r.dst_addr[0:4] = [192, 0, 2, i % 7]
        r.src_port, r.dst_port = 1000 + i, 443
        r.packets, r.octets = i + 1, 100 * (i + 1)
        r.flow_start_ms, r.flow_end_ms = NOW - 9000 + i, NOW - 1000
        r.end_reason = 1 + i % 4
    return batch


def packed(encoder_packer, batch, indices, reverse=False, uptime_base=0):
    """Data records one by one through fp_records_pack (the reference)."""
    out = b""
    for i in indices:
        index = ffi.new("int[]", [i])
        buffer = ffi.new("uint8_t[]", 4096)
        n = lib.fp_records_pack(batch, index, 1, encoder_packer.layout,
                                len(encoder_packer.layout), int(reverse), uptime_base, buffer,
                                4096)
        out += ffi.buffer(buffer, n)[:]
    return out


def data_messages(messages, first_bytes):
    return [(bytes(m), n) for m, n in messages if bytes(m[:2]) == first_bytes and n]


def test_ipfix_messages_framed_in_c_carry_every_record_with_continuing_sequences():
    encoder = IpfixEncoder(DEFAULT_FIELDS, observation_domain=7, mtu=600)
    batch = records(300)
    first = data_messages(encoder.encode(batch, 300, NOW), b"\x00\x0a")
    second = data_messages(encoder.encode(batch, 300, NOW + 1000), b"\x00\x0a")
    sequence = 0
    for message, count in first + second:
        version, length, export_time, seq, domain = struct.unpack("!HHIII", message[:16])
        set_id, set_length = struct.unpack("!HH", message[16:20])
        assert (version, length, domain, seq) == (10, len(message), 7, sequence)
        assert set_length == length - 16 and set_id in (256, 257)
        sequence += count
    assert sequence == 600 == encoder.sequence
    for family, set_id in ((4, 256), (6, 257)):
        packer = encoder.templates[family][2]
        expected = packed(packer, batch, [i for i in range(300)
                                          if batch[i].ip_version == family])
        assert b"".join(m[20:] for m, _ in first if m[16:18] == struct.pack("!H", set_id)) \
            == expected


def test_netflow9_packets_framed_in_c_are_padded_and_count_packets():
    encoder = Netflow9Encoder(DEFAULT_FIELDS, source_id=3, mtu=500, boot_ms=NOW - 60_000)
    batch = records(200)
    messages = data_messages(encoder.encode(batch, 200, NOW), b"\x00\x09")
    unix_secs, uptime = header_clock(NOW, NOW - 60_000)
    sequences = []
    for message, count in messages:
        version, n, up, secs, seq, source = struct.unpack("!HHIIII", message[:20])
        assert (version, n, up, secs, source) == (9, count, uptime, unix_secs, 3)
        assert struct.unpack("!H", message[22:24])[0] == len(message) - 20
        assert len(message) % 4 == 0 and len(message) <= 500
        sequences.append(seq)
    assert sequences == list(range(1, len(messages) + 1))   # the templates' packet was 0
    packer = encoder.templates[4][2]
    data = b"".join(m[24:24 + n * packer.record_length] for m, n in messages
                    if m[20:22] == b"\x01\x00")
    assert data == packed(packer, batch, [i for i in range(200) if batch[i].ip_version == 4],
                          uptime_base=uptime_zero(NOW - 60_000))


def test_netflow5_datagrams_framed_in_c_and_the_32_bit_check():
    encoder = Netflow5Encoder(engine_id=9, boot_ms=NOW - 5000)
    batch = records(100)
    indices = ffi.new("int[]", list(range(100)))
    assert lib.fp_records_over_32_bits(batch, indices, 100, 0) == 0
    batch[5].octets = 2**32
    assert lib.fp_records_over_32_bits(batch, indices, 100, 0) == 1
    assert lib.fp_records_over_32_bits(batch, indices, 100, 1) == 0
    batch[5].octets = 600
    messages = encoder.encode(batch, 100, NOW)
    flows = 0
    for message, count in messages:
        head = struct.unpack("!HHIIIIBBH", message[:24])
        assert head[:2] == (5, count) and head[5] == flows and head[7] == 9
        assert len(message) == 24 + 48 * count
        flows += count
    ipv4 = [i for i in range(100) if batch[i].ip_version == 4]
    assert flows == len(ipv4) == encoder.flow_sequence
    assert encoder.records_not_exportable == 100 - len(ipv4)
    reference = type("Packer", (), {"layout": bytes(LAYOUT)})
    assert b"".join(bytes(m[24:]) for m, _ in messages) == packed(
        reference, batch, ipv4, uptime_base=uptime_zero(NOW - 5000))


def test_messages_stay_whole_after_the_next_batch():
    """An encoder's messages are its own: a later batch never overwrites
    messages a queue or a spool still holds."""
    encoder = IpfixEncoder(DEFAULT_FIELDS)
    first = [bytes(m) for m, _ in encoder.encode(records(50), 50, NOW)]
    kept = encoder.encode(records(50), 50, NOW)
    before = [bytes(m) for m, _ in kept]
    encoder.encode(records(80), 80, NOW)
    assert [bytes(m) for m, _ in kept] == before and first


def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def test_send_all_counts_as_send_does_and_drops_a_datagram_too_large_in_the_middle():
    sink = receiver()
    transport = UdpTransport("127.0.0.1", sink.getsockname()[1])
    batch = [(b"a" * 100, 3), (b"b" * 70000, 5), (memoryview(b"c" * 200), 2)]
    transport.send_all(batch)
    assert [sink.recv(70000) for _ in range(2)] == [b"a" * 100, b"c" * 200]
    stats = transport.stats()
    assert (stats["messages_sent"], stats["records_sent"], stats["octets_sent"]) == (2, 5, 300)
    assert (stats["messages_not_sent"], stats["records_not_sent"], stats["queued"]) == (1, 5, 0)
    assert "too large" in stats["last_error"]
    transport.close()
    sink.close()


def test_send_all_to_a_refused_collector_moves_the_named_datagram_to_not_sent():
    """The ICMP error of a list's last datagram comes back on the next list's
    first send: that datagram is refused, the next list waits, as with send()."""
    reserve = receiver()
    port = reserve.getsockname()[1]
    reserve.close()   # nobody listens
    results = []
    for sending in ("send_all", "send"):
        transport = UdpTransport("127.0.0.1", port, queue_limit=100)
        for number in range(2):
            batch = [(bytes([number, i]) * 10, 4) for i in range(3)]
            if sending == "send_all":
                transport.send_all(batch)
            else:
                for message, count in batch:
                    transport.send(message, count)
        stats = transport.stats()
        results.append({key: stats[key] for key in (
            "messages_sent", "records_sent", "messages_not_sent", "records_refused", "queued",
            "down")})
        transport.close()
    assert results[0] == results[1]
    assert results[0]["down"] and results[0]["records_refused"] == 4
