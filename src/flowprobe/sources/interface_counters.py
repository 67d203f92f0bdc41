"""An interface's counters as the kernel keeps them (/sys/class/net), for
sFlow's generic interface counters: read each counter interval, never per
packet.  What Linux does not count separately (broadcasts, unknown
protocols) is left to the encoder to say "unknown"."""

import os
import socket

SYS_NET = "/sys/class/net"   # a string: pathlib imports urllib on Python 3.11
IF_TYPE_ETHERNET, IF_TYPE_OTHER = 6, 1          # IANAifType
ARPHRD_ETHER = 1
DUPLEX = {"full": 1, "half": 2}                 # sFlow ifDirection; 0 unknown
IFF_UP, IFF_PROMISC = 0x1, 0x100


def _read(path, default=None):
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:   # gone, or a virtual device without the file (speed on a bridge)
        return default


def _number(path):
    text = _read(path, "0")
    try:
        return int(text, 0)
    except ValueError:
        return 0


def read(ifindex):
    """{ifindex, type, speed (bit/s), duplex, status, in_*/out_*, promiscuous},
    or None when no device has that index any more."""
    try:
        device = socket.if_indextoname(ifindex)
    except OSError:
        return None
    base = os.path.join(SYS_NET, device)

    def number(*names):
        return _number(os.path.join(base, *names))

    flags = number("flags")
    speed = number("speed")   # Mbit/s; -1 or missing when unknown
    oper_up = _read(os.path.join(base, "operstate")) in ("up", "unknown")
    rx_packets, multicast = number("statistics", "rx_packets"), number("statistics", "multicast")
    return {
        "ifindex": ifindex,
        "device": device,
        "type": IF_TYPE_ETHERNET if number("type") == ARPHRD_ETHER else IF_TYPE_OTHER,
        "speed": speed * 1_000_000 if speed > 0 else 0,
        "duplex": DUPLEX.get(_read(os.path.join(base, "duplex")), 0),
        # bit 0 admin up, bit 1 operationally up
        "status": (1 if flags & IFF_UP else 0) | (2 if flags & IFF_UP and oper_up else 0),
        "in_octets": number("statistics", "rx_bytes"),
        "in_unicast": max(rx_packets - multicast, 0),
        "in_multicast": multicast,
        "in_discards": number("statistics", "rx_dropped"),
        "in_errors": number("statistics", "rx_errors"),
        "out_octets": number("statistics", "tx_bytes"),
        "out_unicast": number("statistics", "tx_packets"),
        "out_discards": number("statistics", "tx_dropped"),
        "out_errors": number("statistics", "tx_errors"),
        "promiscuous": 1 if flags & IFF_PROMISC else 0,
    }
