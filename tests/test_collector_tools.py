"""The collector harness, checked against softflowd as the exporter.

softflowd is exact on packets and IP-length bytes for these frames (none is short enough to
carry Ethernet padding), so totals must match the capture. Its known flaws must show:
IPFIX sequence numbers count the current message, and the v9 header count holds only the
flow records (RFC 3954 wants templates and options records counted too).
"""

import collections
import socket
import struct
import subprocess

import pytest

from collector_tools import (
    NFCAPD,
    NFDUMP,
    SOFTFLOWD,
    TSHARK,
    DatagramRecorder,
    Nfcapd,
    cflow_totals,
    free_tcp_port,
    free_udp_port,
    missing_tools,
    sequence_problems,
    structure_problems,
    tshark_decode,
    tshark_problems,
    write_classic_pcap,
)

scapy_all = pytest.importorskip("scapy.all")

needs_nfdump = pytest.mark.skipif(missing_tools(NFCAPD, NFDUMP, SOFTFLOWD) is not None,
                                  reason=str(missing_tools(NFCAPD, NFDUMP, SOFTFLOWD)))
needs_tshark = pytest.mark.skipif(missing_tools(TSHARK, SOFTFLOWD) is not None,
                                  reason=str(missing_tools(TSHARK, SOFTFLOWD)))

START_S = 1_700_000_000  # capture epoch; softflowd -A milli exports it back as absolute ms
BULK_FLOWS = 200  # enough for several export messages, so sequence numbers are exercised


def _frames():
    ether = scapy_all.Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    ip, tcp, udp, icmp = scapy_all.IP, scapy_all.TCP, scapy_all.UDP, scapy_all.ICMP
    raw = scapy_all.Raw
    client, server = "10.0.0.1", "10.0.0.2"
    options = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7), ("NOP", None)]  # >= 60 bytes
    frames = [
        ip(src=client, dst=server) / tcp(sport=40000, dport=80, flags="S", seq=1, options=options),
        ip(src=server, dst=client) / tcp(sport=80, dport=40000, flags="SA", seq=100, ack=2,
                                         options=options),
        ip(src=client, dst=server) / tcp(sport=40000, dport=80, flags="A", seq=2, ack=101)
        / raw(b"x" * 100),
        ip(src=server, dst=client) / tcp(sport=80, dport=40000, flags="PA", seq=101, ack=102)
        / raw(b"y" * 300),
        ip(src=client, dst=server) / tcp(sport=40000, dport=80, flags="FA", seq=102, ack=401)
        / raw(b"z" * 6),
        ip(src=server, dst=client) / tcp(sport=80, dport=40000, flags="FA", seq=401, ack=109)
        / raw(b"z" * 6),
        ip(src=client, dst=server) / icmp(type=8, code=0, id=1, seq=1) / raw(b"p" * 56),
        ip(src=server, dst=client) / icmp(type=0, code=0, id=1, seq=1) / raw(b"p" * 56),
        ip(src=client, dst=server) / icmp(type=3, code=3)
        / raw(bytes(ip(src=server, dst=client) / udp(sport=1, dport=2)) + b"\0" * 10),
    ]
    frames += [ip(src="10.1.0.1", dst=f"10.2.{n // 250}.{n % 250 + 1}")
               / udp(sport=1024 + n, dport=53) / raw(b"q" * (40 + n % 7))
               for n in range(BULK_FLOWS)]
    frames.append(scapy_all.IPv6(src="2001:db8::1", dst="2001:db8::2")
                  / udp(sport=1000, dport=2000) / raw(b"v" * 50))
    return [scapy_all.Ether(bytes(ether / frame)) for frame in frames]  # built: lengths set


def _flow_key(frame):
    layer = frame.payload
    proto = layer.nh if layer.version == 6 else layer.proto
    transport = layer.payload
    if proto == 1:
        ports = (0, transport.type * 256 + transport.code)
    else:
        ports = (transport.sport, transport.dport)
    return (proto, layer.src, layer.dst, *ports)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """The pcap, and the truth per flow key: [packets, IP-length octets]."""
    frames = _frames()
    assert all(len(frame) >= 60 for frame in frames)  # no padding for softflowd to count
    path = tmp_path_factory.mktemp("capture") / "flows.pcap"
    write_classic_pcap(path, [(START_S + n / 1000, bytes(f)) for n, f in enumerate(frames)])
    truth = collections.defaultdict(lambda: [0, 0])
    for frame in frames:
        layer = frame.payload
        truth[_flow_key(frame)][0] += 1
        truth[_flow_key(frame)][1] += len(layer) if layer.version == 4 else 40 + layer.plen
    return path, dict(truth)


def _softflowd(capture_path, target, version, *extra):
    host, port = target
    destination = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # -c none: softflowd 1.1.0 -r can block on its control socket; -6 tracks IPv6 for v9/IPFIX
    command = [SOFTFLOWD, "-r", str(capture_path), "-d", "-c", "none", "-v", str(version),
               "-n", destination, *extra]
    if version != 5:
        command.append("-6")
    subprocess.run(command, check=True, capture_output=True, timeout=20)


def _expected(truth, version):
    if version == 5:  # v5 carries IPv4 only
        return {k: v for k, v in truth.items() if ":" not in k[1]}
    return truth


def test_free_ports_are_bindable():
    for free, kind in ((free_udp_port, socket.SOCK_DGRAM), (free_tcp_port, socket.SOCK_STREAM)):
        port = free()
        assert 1024 <= port <= 65535
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))


# ---- nfcapd / nfdump ---------------------------------------------------------------------

@needs_nfdump
@pytest.mark.parametrize("version", [5, 9, 10])
def test_nfcapd_reads_softflowd_exactly(capture, version):
    path, truth = capture
    with Nfcapd() as collector:
        _softflowd(path, collector.address, version)
        flows = collector.flows()
        stats = collector.stats()
        complaints = collector.complaints()
    assert complaints == []
    got = {(f["protocol"], f["src_addr"], f["dst_addr"], f["src_port"], f["dst_port"]):
           [f["packets"], f["octets"]] for f in flows}
    assert got == _expected(truth, version)
    assert stats["packets"] == sum(p for p, _ in got.values())
    assert stats["bad_packets"] == 0 and stats["kernel_drops"] == 0
    tcp = next(f for f in flows if f["protocol"] == 6 and f["dst_port"] == 80)
    assert tcp["tcp_flags"] == 0x13  # SYN, ACK, FIN: nfdump prints "...A..SF"
    assert tcp["reverse_packets"] is None
    assert {f["dst_port"] for f in flows if f["protocol"] == 1} == {8 * 256, 0, 3 * 256 + 3}
    if version == 10:
        # softflowd's IPFIX sequence counts the message's own records: the harness must see it
        assert stats["sequence_failures"] == stats["sequence_errors"] > 0
    else:
        assert stats["sequence_failures"] == 0


@needs_nfdump
def test_nfcapd_keeps_rfc5103_reverse_counters(capture):
    path, truth = capture
    with Nfcapd() as collector:
        _softflowd(path, collector.address, 10, "-b")
        flows = collector.flows()
    tcp = next(f for f in flows if f["protocol"] == 6)
    forward, reverse = truth[(6, "10.0.0.1", "10.0.0.2", 40000, 80)], \
        truth[(6, "10.0.0.2", "10.0.0.1", 80, 40000)]
    assert (tcp["packets"], tcp["octets"]) == tuple(forward)
    assert (tcp["reverse_packets"], tcp["reverse_octets"]) == tuple(reverse)
    assert sum(f["packets"] + f["reverse_packets"] for f in flows) == \
        sum(p for p, _ in truth.values())


@needs_nfdump
def test_nfcapd_absolute_milliseconds(capture):
    path, _ = capture
    with Nfcapd() as collector:
        _softflowd(path, collector.address, 10, "-A", "milli")
        flows = collector.flows()
    tcp = [f for f in flows if f["protocol"] == 6]
    assert min(f["first_ms"] for f in tcp) == START_S * 1000
    assert max(f["last_ms"] for f in tcp) == START_S * 1000 + 5
    # softflowd gives both directions the conversation's times (a known flaw): visible here
    assert tcp[0]["last_ms"] == tcp[1]["last_ms"]


@needs_nfdump
def test_nfcapd_without_exports_and_on_ipv6_loopback():
    with Nfcapd() as collector:
        assert collector.flows() == []
        assert collector.stats()["flows"] == 0
    with Nfcapd(host="::1") as collector:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\x00\x05garbage", collector.address)
        assert collector.flows() == []
        assert collector.returncode == 0
        assert any("Unexpected record count" in line for line in collector.complaints())


# ---- recorder + tshark -------------------------------------------------------------------

@needs_tshark
@pytest.mark.parametrize("version", [5, 9, 10])
def test_tshark_decodes_recorded_softflowd(capture, tmp_path, version):
    path, truth = capture
    with DatagramRecorder() as recorder:
        _softflowd(path, recorder.address, version)
        assert recorder.wait(count=2)
        pcap = recorder.write_pcap(tmp_path / "export.pcap")
        datagrams = len(recorder.received())
    messages = tshark_decode(pcap, recorder.port)
    totals = cflow_totals(messages)
    expected = _expected(truth, version)
    assert totals["messages"] == datagrams
    assert totals["data_records"] == len(expected)
    assert totals["packets"] == sum(p for p, _ in expected.values())
    assert totals["octets"] == sum(o for _, o in expected.values())
    assert sum(totals["records_per_message"]) == totals["data_records"]
    assert {m["version"] for m in messages} == {version}
    problems = tshark_problems(pcap, recorder.port)
    if version == 10:
        assert totals["options_records"] == 1
        assert any("Unexpected flow sequence" in p for p in problems), problems
        assert sequence_problems(messages)
        assert structure_problems(messages) == []
        record = next(r for m in messages for r in m["records"] if r["kind"] == "data")
        assert {"cflow.srcaddr", "cflow.octets", "cflow.packets"} <= set(record["fields"])
        assert messages[0]["templates"][0]["template_id"] >= 256
    else:
        assert problems == []
        assert sequence_problems(messages) == []
    if version == 9:
        # softflowd counts only flow records in the v9 header
        assert any("count" in p for p in structure_problems(messages))


@needs_tshark
def test_tshark_shows_rfc5103_reverse_fields(capture, tmp_path):
    path, truth = capture
    with DatagramRecorder() as recorder:
        _softflowd(path, recorder.address, 10, "-b")
        assert recorder.wait(count=2)
        pcap = recorder.write_pcap(tmp_path / "biflow.pcap")
    totals = cflow_totals(tshark_decode(pcap, recorder.port))
    assert totals["reverse_packets"] > 0
    assert totals["packets"] + totals["reverse_packets"] == sum(p for p, _ in truth.values())
    assert totals["octets"] + totals["reverse_octets"] == sum(o for _, o in truth.values())


@needs_tshark
def test_tshark_reassembles_ipfix_over_tcp(capture, tmp_path):
    path, truth = capture
    with DatagramRecorder(tcp=True) as recorder:
        _softflowd(path, recorder.address, 10, "-P", "tcp")
        assert recorder.wait(count=1)
        pcap = recorder.write_pcap(tmp_path / "tcp.pcap")
        streams = recorder.received()
    assert len(streams) == 1 and streams[0].closed_time is not None
    messages = tshark_decode(pcap, recorder.port, transport="tcp")
    totals = cflow_totals(messages)
    assert totals["packets"] == sum(p for p, _ in truth.values())
    assert sum(m["length"] for m in messages) == len(streams[0].data)
    assert not [p for p in tshark_problems(pcap, recorder.port, "tcp")
                if "sequence" not in p.lower()]


IPFIX_HEADER = "!HHIII"  # version, length, export time, sequence, observation domain


@needs_tshark
def test_tshark_reports_missing_template_and_malformed(capture, tmp_path):
    path, _ = capture
    with DatagramRecorder() as recorder:
        _softflowd(path, recorder.address, 9)
        assert recorder.wait(count=2)
        recorder.datagrams.pop(0)  # the templates travel in the first datagram
        before = len(recorder.received())
        broken = [
            # a template record cut short: tshark raises "Malformed Packet"
            struct.pack(IPFIX_HEADER, 10, 26, 0, 0, 0) + struct.pack("!HHHHH", 2, 10, 256, 5, 8),
            # a header claiming 100 bytes in a 20-byte datagram: tshark says only "partial"
            struct.pack(IPFIX_HEADER, 10, 100, 0, 0, 0) + struct.pack("!HH", 256, 64),
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in broken:
                sock.sendto(datagram, recorder.address)
        assert recorder.wait(count=before + len(broken))
        pcap = recorder.write_pcap(tmp_path / "broken.pcap")
    problems = tshark_problems(pcap, recorder.port)
    messages = tshark_decode(pcap, recorder.port)
    truncated_template, partial = messages[-2]["frame"], messages[-1]["frame"]
    assert any("no template found" in p for p in problems), problems
    assert f"frame {truncated_template}: error/Malformed: Malformed Packet (Exception occurred)" \
        in problems
    assert not any(p.startswith(f"frame {partial}:") for p in problems)  # tshark is silent...
    assert any(p.startswith(f"frame {partial}:") for p in structure_problems(messages))  # not us
    assert cflow_totals(messages)["unknown_sets"] > 0


@needs_tshark
def test_recorder_pcap_has_valid_checksums_on_ipv6(capture, tmp_path):
    path, _ = capture
    with DatagramRecorder(host="::1") as recorder:
        _softflowd(path, recorder.address, 9)
        assert recorder.wait(count=2)
        pcap = recorder.write_pcap(tmp_path / "v6.pcap")
    for frame in scapy_all.rdpcap(str(pcap)):
        udp = frame[scapy_all.UDP]
        wire = udp.chksum
        del udp.chksum
        assert scapy_all.Ether(bytes(frame))[scapy_all.UDP].chksum == wire
    messages = tshark_decode(pcap, recorder.port)
    assert messages and all(m["exporter"].startswith("[::1]:") for m in messages)
