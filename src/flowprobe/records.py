"""Flow records as Python sees them: converted from C in batches."""

# the C module: `socket` builds its enums at import, a cost at every start
from _socket import AF_INET, AF_INET6, inet_ntop

from flowprobe._cmeter_ffi import ffi

# IANA IPFIX flowEndReason (IE 136)
END_REASONS = {
    1: "idle_timeout",
    2: "active_timeout",
    3: "end_of_flow",
    4: "forced_end",
    5: "lack_of_resources",
}

PROTOCOL_ESP = 50
DIRECTIONS = {1: "in", 2: "out"}  # FP_DIRECTION_*; absent: the capture saw both


def _address(raw, ip_version):
    if ip_version == 4:
        return inet_ntop(AF_INET, raw[:4])
    if ip_version == 6:
        return inet_ntop(AF_INET6, raw)
    return ""   # a layer-2 flow (l2_flows): MACs and EtherType instead


def mac_text(raw):
    return ":".join(f"{b:02x}" for b in raw)


def record_to_dict(r, bidirectional=False):
    """One struct fp_record → a plain dict (JSON-ready)."""
    version = r.ip_version
    record = {
        "ip_version": version,
        "protocol": r.protocol,
        "src_addr": _address(bytes(ffi.buffer(r.src_addr)), version),
        "dst_addr": _address(bytes(ffi.buffer(r.dst_addr)), version),
        "src_port": r.src_port,
        "dst_port": r.dst_port,
        "packets": r.packets,
        "octets": r.octets,
        "flow_start_ms": r.flow_start_ms,
        "flow_end_ms": r.flow_end_ms,
        "tcp_flags": r.tcp_flags,
        "tos": r.tos,
        "vlan_id": r.vlan_id,
        "inner_vlan_id": r.inner_vlan_id,
        "ifindex": r.ifindex,
        "end_reason": END_REASONS.get(r.end_reason, str(r.end_reason)),
    }
    if r.protocol == PROTOCOL_ESP:
        record["ipsec_spi"] = r.ipsec_spi
    if r.direction:
        record["direction"] = DIRECTIONS[r.direction]
    if r.layer2_segment_id:   # an inner flow of a tunnel
        record["layer2_segment_id"] = r.layer2_segment_id
    if r.icmp_errors:         # ICMP errors about the flow (option icmp_errors)
        record.update(icmp_errors=r.icmp_errors, icmp_error_type=r.icmp_error_type_code >> 8,
                      icmp_error_code=r.icmp_error_type_code & 0xFF)
    if not version:   # a layer-2 flow (l2_flows)
        record.update(src_mac=mac_text(bytes(r.src_mac)), dst_mac=mac_text(bytes(r.dst_mac)),
                      ethernet_type=r.ethernet_type)
    if r.checksum_errors:   # verify_checksums
        record["checksum_errors"] = r.checksum_errors
    if bidirectional:
        record.update(
            reverse_packets=r.reverse_packets,
            reverse_octets=r.reverse_octets,
            reverse_start_ms=r.reverse_start_ms,
            reverse_end_ms=r.reverse_end_ms,
            reverse_tcp_flags=r.reverse_tcp_flags,
        )
    return record
