"""Layer-2 flows (option l2_flows): frames that are not IP become flows
keyed by MACs, VLAN tags and EtherType, in a template of their own; off,
they stay counted under dropped_non_ip.  Frames are built with scapy,
written to a pcap and metered through libpcap; the truth is what was built."""

import json

import pytest
from scapy.layers.eap import EAPOL
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, LLC, STP, Dot1AD, Dot1Q, Dot3
from scapy.layers.l2 import Ether as ScapyEther
from scapy.layers.ppp import PPP, PPPoE, PPPoED

from captures import assert_conserved, run_cli, write_pcap
from captures import meter_frames as meter_bytes

A, B, BROADCAST, LLDP_GROUP = ("02:00:00:00:00:0a", "02:00:00:00:00:0b", "ff:ff:ff:ff:ff:ff",
                               "01:80:c2:00:00:0e")
ETHERTYPE_ARP, ETHERTYPE_LLDP, ETHERTYPE_EAPOL = 0x0806, 0x88CC, 0x888E
ETHERTYPE_PPPOE_DISCOVERY, ETHERTYPE_PPPOE_SESSION = 0x8863, 0x8864


def Ether(src=A, dst=B, **fields):  # noqa: N802 - scapy's name; fixed MACs, no ARP lookups
    return ScapyEther(src=src, dst=dst, **fields)


def lldp(src=A):
    return Ether(src=src, dst=LLDP_GROUP, type=ETHERTYPE_LLDP) / (b"\x02\x07\x04" + b"\0" * 40)


# (frame, its key: source MAC, destination MAC, VLAN, inner VLAN, EtherType)
FRAMES = [
    (Ether(dst=BROADCAST) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"), (A, BROADCAST, 0, 0, 0x0806)),
    (Ether(src=B, dst=A) / ARP(op=2), (B, A, 0, 0, 0x0806)),
    (lldp(), (A, LLDP_GROUP, 0, 0, ETHERTYPE_LLDP)),
    (Ether() / EAPOL(type=1), (A, B, 0, 0, ETHERTYPE_EAPOL)),
    (Ether(dst=BROADCAST) / PPPoED(), (A, BROADCAST, 0, 0, ETHERTYPE_PPPOE_DISCOVERY)),
    (Ether() / PPPoE(sessionid=7) / PPP(proto=0xC021) / b"\x01\x01\x00\x04",   # LCP
     (A, B, 0, 0, ETHERTYPE_PPPOE_SESSION)),
    (Dot3(src=A, dst="01:80:c2:00:00:00") / LLC() / STP(), (A, "01:80:c2:00:00:00", 0, 0, 0)),
    (Ether() / Dot1Q(vlan=10) / ARP(), (A, B, 10, 0, ETHERTYPE_ARP)),
    (Ether() / Dot1AD(vlan=100) / Dot1Q(vlan=20) / ARP(), (A, B, 100, 20, ETHERTYPE_ARP)),
]


def behind_ethertype(frame):
    """The octets a layer-2 flow counts: the frame after the Ethernet header
    and its VLAN tags (padding included)."""
    raw = bytes(frame)
    offset = 12
    while raw[offset:offset + 2] in (b"\x81\x00", b"\x88\xa8", b"\x91\x00"):
        offset += 4
    return len(raw) - offset - 2


def meter_frames(tmp_path, frames, **settings):
    return meter_bytes(tmp_path, [bytes(f) for f in frames], **settings)


def key(record):
    return (record["src_mac"], record["dst_mac"], record["vlan_id"], record["inner_vlan_id"],
            record["ethernet_type"])


def test_every_non_ip_frame_is_a_flow_of_its_key(tmp_path):
    frames = [f for f, _ in FRAMES] * 2 + [Ether() / IP() / TCP()]
    records, counters = meter_frames(tmp_path, frames, l2_flows=True)
    assert_conserved(records, counters)
    layer2 = {key(r): r for r in records if r["ip_version"] == 0}
    assert layer2.keys() == {k for _, k in FRAMES}
    for frame, k in FRAMES:
        assert (layer2[k]["packets"], layer2[k]["octets"]) == (2, 2 * behind_ethertype(frame))
        assert (layer2[k]["src_addr"], layer2[k]["protocol"], layer2[k]["src_port"]) == ("", 0, 0)
    assert counters["layer2_packets"] == 2 * len(FRAMES)
    assert counters["dropped_non_ip"] == 0
    assert [r["protocol"] for r in records if r["ip_version"] == 4] == [6]


def test_off_they_stay_counted_as_non_ip(tmp_path):
    records, counters = meter_frames(tmp_path, [f for f, _ in FRAMES])
    assert records == []
    assert counters["dropped_non_ip"] == len(FRAMES)
    assert counters["layer2_packets"] == 0


def test_an_ip_flow_never_joins_a_layer2_flow_of_the_same_bytes(tmp_path):
    """The key's MAC bytes sit where IPv4 addresses and ports do: an IPv4
    flow whose addresses and ports spell the same bytes stays apart."""
    mac_a, mac_b = "0a:00:00:01:00:50", "0a:00:00:02:00:51"   # 10.0.0.1:80, 10.0.0.2:81
    records, counters = meter_frames(tmp_path, [
        Ether(src=mac_a, dst=mac_b, type=0x0800 + 1) / (b"x" * 30),
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=0) / (b"y" * 10),
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=80, dport=81)],
        l2_flows=True)
    assert sorted(r["ip_version"] for r in records) == [0, 4, 4]
    assert all(r["packets"] == 1 for r in records)


def test_biflow_folds_a_reply_and_the_record_names_both_directions(tmp_path):
    records, _ = meter_frames(tmp_path, [Ether() / ARP(), Ether(src=B, dst=A) / ARP(op=2),
                                         Ether() / ARP()], l2_flows=True, bidirectional=True)
    (record,) = records
    assert (record["src_mac"], record["dst_mac"], record["packets"],
            record["reverse_packets"]) == (A, B, 2, 1)


def test_cooked_captures_have_no_destination_mac_so_stay_counted(tmp_path):
    from scapy.layers.l2 import CookedLinux
    frames = [CookedLinux(proto=ETHERTYPE_ARP) / ARP()]
    records, counters = meter_frames(tmp_path, frames, linktype=113, l2_flows=True)
    assert records == [] and counters["dropped_non_ip"] == 1


def test_json_and_text_show_macs_and_ethertype(tmp_path):
    path = write_pcap(tmp_path / "l2.pcap", [bytes(lldp()), bytes(lldp())])
    result = run_cli("read", "--json", "--l2-flows", path)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert (record["ip_version"], record["src_mac"], record["dst_mac"], record["ethernet_type"],
            record["packets"]) == (0, A, LLDP_GROUP, ETHERTYPE_LLDP, 2)
    text = run_cli("read", "--l2-flows", path)
    assert text.returncode == 0, text.stderr
    assert A in text.stdout and "0x88cc" in text.stdout.lower()


def test_netflow5_counts_them_not_exportable(tmp_path):
    from collector_tools import DatagramRecorder
    from test_export_collectors import export
    path = write_pcap(tmp_path / "l2.pcap", [bytes(lldp()), bytes(Ether() / IP() / TCP())])
    with DatagramRecorder() as recorder:
        summary = export(path, f"netflow5://127.0.0.1:{recorder.port}", extra=("--l2-flows",))
    assert summary["exporters"][0]["records_not_exportable"] == 1


@pytest.mark.parametrize("protocol", ["ipfix", "netflow9"])
def test_tshark_decodes_the_layer2_template(tmp_path, protocol):
    """The layer-2 template (its own id) carries sourceMacAddress (56),
    destinationMacAddress (80) and ethernetType (256), as tshark reads them;
    the IP records go on in theirs."""
    from collector_tools import (
        TSHARK,
        DatagramRecorder,
        missing_tools,
        tshark_decode,
        tshark_problems,
    )
    from test_export_collectors import export

    if missing_tools(TSHARK):
        pytest.skip(missing_tools(TSHARK))
    frames = [bytes(f) for f, _ in FRAMES] + [
        bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())]
    path = write_pcap(tmp_path / "l2.pcap", frames)
    with DatagramRecorder() as recorder:
        summary = export(path, f"{protocol}://127.0.0.1:{recorder.port}", extra=("--l2-flows",))
        recorder.wait(summary["exporters"][0]["messages_sent"])
        recorder.write_pcap(tmp_path / "out.pcap")
    assert tshark_problems(tmp_path / "out.pcap", recorder.port) == []
    records = [r["fields"] for m in tshark_decode(tmp_path / "out.pcap", recorder.port)
               for r in m["records"] if r["kind"] == "data"]
    layer2 = [r for r in records if "cflow.ethernet_type" in r]
    got = sorted((r["cflow.srcmac"], r["cflow.dstmac"], int(r["cflow.vlanid"]),
                  int(r["cflow.ethernet_type"]), int(r["cflow.packets"]), int(r["cflow.octets"]))
                 for r in layer2)
    want = sorted((k[0], k[1], k[2], k[4], 1, behind_ethertype(f)) for f, k in FRAMES)
    assert got == want
    if protocol == "ipfix":   # v9 has no field for the customer (inner) VLAN
        inner = [r["cflow.dot1q_customer_vlan_id"] for r in layer2 if int(r["cflow.vlanid"])]
        assert sorted(map(int, inner)) == [0, 20]
    assert [r["cflow.srcaddr"] for r in records if "cflow.ethernet_type" not in r] == ["10.0.0.1"]


def test_the_history_store_keeps_them_without_addresses(tmp_path):
    from flowprobe.meter import Meter
    from flowprobe.settings import MeterSettings
    from flowprobe.store import query, segments
    from flowprobe.store.sink import HistorySink

    meter = Meter(MeterSettings(hash_seed=1, l2_flows=True))
    for n, frame in enumerate([lldp(), lldp(), Ether() / IP(src="10.0.0.1") / TCP()]):
        meter.process_frame(bytes(frame), 1, 1_700_000_000_000_000 + n * 1000, ifindex=2)
    meter.flush()
    directory = str(tmp_path / "history")
    sink = HistorySink(directory, 1024 * 1024, 5, {2: "lan"})
    sink.start()
    for batch, count in meter.drain_raw():
        sink.deliver(batch, count, 1_700_000_100_000)
    sink.finish()
    sealed, _ = segments.inventory(directory)
    reply = query.run(query.Query({"group_by": "ip_version", "since": 1_699_999_000_000},
                                  1_700_000_200_000), sealed)
    assert {g["ip_version"]: g["packets"] for g in reply["groups"]} == {0: 2, 4: 1}


def test_the_options_per_interface_and_their_errors():
    from flowprobe import config
    text = """
config flowprobe 'main'
\toption enabled '1'
\toption verify_checksums '1'
\tlist interface 'wan'
\tlist interface 'lan'
config interface 'lan'
\toption l2_flows '1'
"""
    parsed = config.parse(text)
    assert {i.name: i.l2_flows for i in parsed.interfaces} == {"wan": False, "lan": True}
    assert parsed.meter.l2_flows and parsed.meter.verify_checksums   # the table has room
    plain = config.parse(text.replace("\toption l2_flows '1'\n", ""))
    assert not plain.meter.l2_flows
    with pytest.raises(config.ConfigError, match=r"flowprobe\.lan\.l2_flows: invalid value"):
        config.parse(text.replace("l2_flows '1'", "l2_flows 'maybe'"))
    with pytest.raises(config.ConfigError, match=r"flowprobe\.main\.verify_checksums"):
        config.parse(text.replace("verify_checksums '1'", "verify_checksums '2'"))


def test_a_source_cannot_turn_them_on_in_a_table_without_room(tmp_path):
    from flowprobe.meter import Meter, MeterError
    from flowprobe.settings import MeterSettings
    path = write_pcap(tmp_path / "l2.pcap", [bytes(lldp())])
    with pytest.raises(MeterError, match="l2_flows"):
        Meter(MeterSettings()).open_file(path, l2_flows=True)
    meter = Meter(MeterSettings(l2_flows=True))   # on for the table, off for this source
    source = meter.open_file(path, l2_flows=False)
    while meter.dispatch(source):
        pass
    assert meter.counters()["dropped_non_ip"] == 1


def test_a_field_list_without_ethertype_counts_them_not_exportable(tmp_path):
    from collector_tools import DatagramRecorder
    from test_export_collectors import export
    path = write_pcap(tmp_path / "l2.pcap", [bytes(lldp()), bytes(Ether() / IP() / TCP())])
    fields = "sourceIPv4Address,destinationIPv4Address,packetDeltaCount"
    with DatagramRecorder() as recorder:
        summary = export(path, f"ipfix://127.0.0.1:{recorder.port}?fields={fields}",
                         extra=("--l2-flows",))
    assert summary["exporters"][0]["records_not_exportable"] == 1
