"""MAC addresses of captured flows (issue 16): with settings.macs (on while
a collector asks for sourceMacAddress/destinationMacAddress), each record
carries the first frame's MACs per direction, packed per direction; off,
the meter keeps no MAC memory at all and the hot flow slot never grows."""

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from captures import START_US
from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.config import parse
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings

CLIENT, SERVER = "10.1.0.1", "10.2.0.2"
CLIENT_MAC, ROUTER_IN, ROUTER_OUT, SERVER_MAC = (
    "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:04")


def frame(src, dst, src_mac, dst_mac):
    ports = (5000, 53) if src == CLIENT else (53, 5000)
    return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst)
                 / UDP(sport=ports[0], dport=ports[1]))


def records(settings, frames):
    meter = Meter(MeterSettings(hash_seed=1, **settings))
    for n, data in enumerate(frames):
        meter.process_frame(data, 1, START_US + n * 1000)
    meter.flush()
    out = []
    for batch, count in meter.drain_raw():
        for r in batch[0:count]:
            out.append({name: ":".join(f"{b:02x}" for b in bytes(ffi.buffer(getattr(r, name))))
                        for name in ("src_mac", "dst_mac", "reverse_src_mac",
                                     "reverse_dst_mac")})
    return meter, out


ZERO = "00:00:00:00:00:00"
FORWARD = frame(CLIENT, SERVER, CLIENT_MAC, ROUTER_IN)
REPLY = frame(SERVER, CLIENT, SERVER_MAC, ROUTER_OUT)
LATER = frame(CLIENT, SERVER, "02:00:00:00:00:99", ROUTER_IN)   # another MAC: not the first


def test_each_direction_keeps_its_first_frames_macs():
    _, [record] = records({"macs": True, "bidirectional": True}, [FORWARD, REPLY, LATER])
    assert record == {"src_mac": CLIENT_MAC, "dst_mac": ROUTER_IN,
                      "reverse_src_mac": SERVER_MAC, "reverse_dst_mac": ROUTER_OUT}
    _, uniflows = records({"macs": True}, [FORWARD, REPLY, LATER])
    assert sorted((r["src_mac"], r["dst_mac"]) for r in uniflows) == [
        (CLIENT_MAC, ROUTER_IN), (SERVER_MAC, ROUTER_OUT)]


def test_off_keeps_no_mac_memory_and_records_carry_zeros():
    off, [record] = records({"bidirectional": True}, [FORWARD, REPLY])
    assert set(record.values()) == {ZERO}
    on, _ = records({"macs": True, "bidirectional": True}, [FORWARD])
    slots = (on.memory_bytes - off.memory_bytes) // 24
    assert on.memory_bytes - off.memory_bytes == slots * 24 and slots >= 65536
    uniflow_off, _ = records({}, [FORWARD])
    uniflow_on, _ = records({"macs": True}, [FORWARD])
    assert uniflow_on.memory_bytes - uniflow_off.memory_bytes == slots * 12


def test_the_packer_writes_each_directions_macs():
    meter, _ = records({"macs": True, "bidirectional": True}, [])
    meter.process_frame(FORWARD, 1, START_US)
    meter.process_frame(REPLY, 1, START_US + 1000)
    meter.flush()
    [(batch, count)] = list(meter.drain_raw())
    layout = bytes([lib.FP_FIELD_SRC_MAC, lib.FP_FIELD_DST_MAC])
    out, indices = ffi.new("uint8_t[]", 64), ffi.new("int[]", [0])
    packed = []
    for reverse in (0, 1):
        n = lib.fp_records_pack(batch, indices, 1, layout, len(layout), reverse, 0, out, 64)
        packed.append(bytes(ffi.buffer(out, n)).hex(":"))
    assert packed == [f"{CLIENT_MAC}:{ROUTER_IN}", f"{SERVER_MAC}:{ROUTER_OUT}"]


def test_the_meter_keeps_macs_only_while_a_collector_asks_for_them():
    base = ("config flowprobe 'main'\n\tlist interface 'lan'\n"
            "config collector 'c'\n\toption host '192.0.2.1'\n")
    assert parse(base).meter.macs is False
    asked = parse(base + "\toption fields 'sourceIPv4Address sourceMacAddress'\n")
    assert asked.meter.macs is True
