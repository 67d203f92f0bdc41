"""How the command line writes numbers, times and addresses: the one place.

The rules are LuCI's status page's (view/flowprobe/status.js), so the two
say the same thing the same way:
- amounts of memory and traffic in IEC units (1024): "7.1 MiB";
- rates and counts with SI prefixes (1000), as links are rated:
  "97.6 kbit/s", "12.2 kB/s", "1.2 M"; bit/s first, bytes/s beside;
- below 100 one decimal, from 100 none: "1.2 M", "123 M";
- times are local, ISO 8601 with milliseconds for records; durations in
  words for people ("3 h 12 min") and compact in tables ("1h02m").
"""

import functools
import time

PROTOCOL_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6",
                  132: "SCTP", 136: "UDP-Lite"}
ICMP_PROTOCOLS = (1, 58)

# RFC 792, 4443 and IANA's registries; the same names as LuCI's
ICMP_TYPES = {
    1: {0: "echo reply", 3: "unreachable", 4: "source quench", 5: "redirect",
        8: "echo request", 9: "router advertisement", 10: "router solicitation",
        11: "time exceeded", 12: "parameter problem", 13: "timestamp", 14: "timestamp reply"},
    58: {1: "unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem",
         128: "echo request", 129: "echo reply", 130: "MLD query", 131: "MLD report",
         133: "router solicitation", 134: "router advertisement",
         135: "neighbor solicitation", 136: "neighbor advertisement", 137: "redirect",
         143: "MLDv2 report"},
}
ICMP_UNREACHABLE = {
    1: {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
        3: "port unreachable", 4: "fragmentation needed", 9: "network prohibited",
        10: "host prohibited", 13: "administratively prohibited"},
    58: {0: "no route", 1: "administratively prohibited", 3: "address unreachable",
         4: "port unreachable", 5: "source address failed policy", 6: "reject route"},
}

# TCP flag letters from the high bit down, as nfdump and tcpdump write them
TCP_FLAG_LETTERS = "CEUAPRSF"

END_REASONS = {"idle_timeout": "idle", "active_timeout": "active", "end_of_flow": "end",
               "forced_end": "forced", "lack_of_resources": "evicted"}

# the meter's counters of packets it took and did not meter, in words
METER_DROPS = (
    ("dropped_truncated", "truncated"),
    ("dropped_malformed", "malformed"),
    ("dropped_flow_table_full", "flow table full"),
    ("dropped_export_backlog", "export backlog"),
    ("dropped_fragment_orphaned", "orphaned fragments"),
    ("dropped_tcp_after_end", "late segments of ended TCP connections"),
)

# linux/capability.h
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


# ---- numbers ----

def _scaled(value, base, prefixes):
    value, i = float(value), 0
    while abs(value) >= base and i < len(prefixes) - 1:
        value /= base
        i += 1
    return value, prefixes[i]


def _number(value, scaled):
    return f"{value:.0f}" if not scaled or abs(value) >= 100 else f"{value:.1f}"


def si(value, unit=""):
    """1234567 -> '1.2 M'; with a unit: si(97600, 'bit/s') -> '97.6 kbit/s'."""
    scaled, prefix = _scaled(value, 1000, ("", "k", "M", "G", "T", "P"))
    text = _number(scaled, bool(prefix))
    if prefix or unit:
        return f"{text} {prefix}{unit}"
    return text


def count(value):
    """A count of packets, flows, records: exact below 1000, else '1.2 M'."""
    return str(value) if isinstance(value, int) and value < 1000 else si(value)


def plural(value, noun):
    """(1, 'flow') -> '1 flow'; (2000, 'packet') -> '2.0 k packets'."""
    return f"{count(value)} {noun}{'' if value == 1 else 's'}"


def size(octets):
    """Memory and traffic amounts: '512 B', '1.5 KiB', '7.1 MiB' (IEC, 1024)."""
    scaled, prefix = _scaled(octets, 1024, ("", "Ki", "Mi", "Gi", "Ti", "Pi"))
    return f"{_number(scaled, bool(prefix))} {prefix}B"


def packet_rate(packets_per_s):
    """'812 k packets/s' (packets take no SI prefix of their own)."""
    return f"{si(packets_per_s)} packets/s"


def bit_rate(bytes_per_s):
    """A byte rate as links are rated: '97.6 kbit/s'."""
    return si(bytes_per_s * 8, "bit/s")


def byte_rate(bytes_per_s):
    return si(bytes_per_s, "B/s")


def bit_rate_with_bytes(bytes_per_s):
    """'97.6 kbit/s (12.2 kB/s)', as LuCI writes a rate."""
    return f"{bit_rate(bytes_per_s)} ({byte_rate(bytes_per_s)})"


def percent(fraction):
    """0.1234 -> '12.3 %'; a share that is not 0 never shows as 0."""
    value = fraction * 100
    if 0 < value < 0.1:
        return "<0.1 %"
    return f"{value:.1f} %"


# ---- time ----

@functools.lru_cache(maxsize=4096)
def _local_second(epoch_s):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))


def local_time(epoch_s):
    """'2026-12-02 01:48:45' in the local zone."""
    zone = (time.tzname, time.timezone, time.altzone)
    if zone != _zone[0]:                # TZ changed (tzset): forget what was written
        _local_second.cache_clear()
        _zone[0] = zone
    return _local_second(int(epoch_s))


_zone = [None]


def timestamp_ms(epoch_ms):
    """A record's time: '2026-12-02 01:48:45.123' (local, ISO 8601 with a
    space, as RFC 3339 allows and nfdump writes)."""
    seconds, ms = divmod(int(epoch_ms), 1000)
    return f"{local_time(seconds)}.{ms:03d}"


def duration(seconds):
    """For people: '42 s', '5 min 3 s', '3 h 12 min', '2 d 4 h'."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(seconds):
    return f"{duration(seconds)} ago"


def age(ms):
    """For table columns: '0s', '59s', '1m00s', '1h02m', '1d01h'."""
    seconds = int(max(0, ms) // 1000)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def seconds_ms(ms):
    """A flow's duration in seconds with milliseconds: '12.345'."""
    return f"{max(0, ms) / 1000:.3f}"


# ---- flows ----

def protocol_name(number):
    return PROTOCOL_NAMES.get(number, str(number))


def icmp_name(protocol, type_code):
    """ICMP type/code (IPFIX icmpTypeCode, type·256 + code) in words."""
    kind, code = divmod(type_code, 256)
    is_v6 = protocol == 58
    name = ICMP_TYPES.get(protocol, {}).get(kind)
    if kind == (1 if is_v6 else 3):
        return ICMP_UNREACHABLE[protocol].get(code, f"unreachable, code {code}")
    if kind == (3 if is_v6 else 11) and code in (0, 1):
        return ("hop limit exceeded" if is_v6 else "TTL exceeded") if code == 0 \
            else "reassembly time exceeded"
    if name:
        return f"{name}, code {code}" if code else name
    return f"type {kind}, code {code}"


def endpoint(address, port, ip_version=None):
    """'10.0.0.1:80', '[2001:db8::1]:443' (RFC 3986: brackets keep the
    port apart from an IPv6 address)."""
    is_v6 = ip_version == 6 if ip_version is not None else ":" in address
    return f"[{address}]:{port}" if is_v6 else f"{address}:{port}"


ETHERTYPE_NAMES = {0: "802.3 LLC", 0x0806: "ARP", 0x8035: "RARP", 0x88CC: "LLDP",
                   0x888E: "EAPOL", 0x8863: "PPPoE discovery", 0x8864: "PPPoE session",
                   0x8847: "MPLS", 0x8848: "MPLS multicast", 0x88F7: "PTP",
                   0x8809: "slow protocols", 0x893A: "IEEE 1905", 0x88E5: "MACsec"}


def ethertype_name(ethertype):
    """'0x88cc LLDP' (the number, and its name when known)."""
    name = ETHERTYPE_NAMES.get(ethertype)
    return f"0x{ethertype:04x} {name}" if name else f"0x{ethertype:04x}"


def flow_ends(flow):
    """(source, destination) as an operator reads them: with ports where the
    protocol has them, the ICMP type in words beside the destination; a
    layer-2 flow's MACs, its EtherType beside the destination."""
    protocol, version = flow["protocol"], flow.get("ip_version")
    if version == 0 and "src_mac" in flow:
        return flow["src_mac"], f"{flow['dst_mac']} {ethertype_name(flow['ethernet_type'])}"
    if protocol in ICMP_PROTOCOLS:
        return flow["src_addr"], f"{flow['dst_addr']} {icmp_name(protocol, flow['dst_port'])}"
    if flow["src_port"] or flow["dst_port"]:
        return (endpoint(flow["src_addr"], flow["src_port"], version),
                endpoint(flow["dst_addr"], flow["dst_port"], version))
    return flow["src_addr"], flow["dst_addr"]


def tcp_flags(flags, protocol=6):
    """'...AP.SF' for TCP (a dot where a flag was not seen); '' otherwise."""
    if protocol != 6:
        return ""
    return "".join(letter if flags & (0x80 >> i) else "."
                   for i, letter in enumerate(TCP_FLAG_LETTERS))


def end_reason(reason):
    return END_REASONS.get(reason, reason)


def capabilities(numbers):
    """[12, 13] -> 'CAP_NET_ADMIN CAP_NET_RAW'; nearly all of them (root):
    'all but CAP_SYS_RESOURCE'."""
    names = [CAPABILITIES[n] if n < len(CAPABILITIES) else f"CAP_{n}" for n in numbers]
    if not names:
        return "none"
    missing = [name for n, name in enumerate(CAPABILITIES) if n not in numbers]
    if len(missing) < len(names) // 4:
        return "all" if not missing else "all but " + " ".join(missing)
    return " ".join(names)


# ---- tables ----

def table(header, rows, right=()):
    """Aligned columns; the indexes in `right` are right-aligned (numbers)."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = []
    for row in [header] + rows:
        cells = [str(cell).rjust(width) if i in right else str(cell).ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def shorten(text, width):
    """Cut in the middle with '…' to fit `width` (the ends of an address
    and its port are what tell flows apart)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]
