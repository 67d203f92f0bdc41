"""ctnetlink messages (conntrack DESTROY events and dump entries) built by
hand, to drive the conntrack source's table through exact sequences
(fp_conntrack_replay) or to send into its event socket from another
netlink socket, in a network namespace of the test's own."""

import ctypes
import json
import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE = 0, 2
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO = 1, 2, 4
CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID, CTA_TIMESTAMP = 9, 10, 12, 20
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
TCP_CLOSE = 7
CLONE_NEWNET = 0x40000000


def _attr(kind, payload):
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def _tuple(src, dst, sport, dport, protocol):
    ip = _attr(1, socket.inet_aton(src)) + _attr(2, socket.inet_aton(dst))
    proto = (_attr(1, bytes([protocol])) + _attr(2, struct.pack("!H", sport)) +
             _attr(3, struct.pack("!H", dport)))
    return _attr(CTA_TUPLE_IP, ip) + _attr(CTA_TUPLE_PROTO, proto)


def _counters(packets, octets):
    return _attr(1, struct.pack("!Q", packets)) + _attr(2, struct.pack("!Q", octets))


def message(conn_id, sport, packets, start_ms, destroy=False, stop_ms=0, reply_packets=0,
            src="10.92.1.2", dst="10.92.2.2", dport=9100, protocol=6):
    """One connection as a dump lists it, or (destroy) as its DESTROY event
    says it; octets are 52 a packet."""
    body = (_attr(CTA_TUPLE_ORIG, _tuple(src, dst, sport, dport, protocol)) +
            _attr(CTA_TUPLE_REPLY, _tuple(dst, src, dport, sport, protocol)) +
            _attr(CTA_ID, struct.pack("!I", conn_id)) +
            _attr(CTA_COUNTERS_ORIG, _counters(packets, packets * 52)) +
            _attr(CTA_COUNTERS_REPLY, _counters(reply_packets, reply_packets * 52)) +
            _attr(CTA_TIMESTAMP, _attr(1, struct.pack("!Q", start_ms * 1_000_000)) +
                  (_attr(2, struct.pack("!Q", stop_ms * 1_000_000)) if stop_ms else b"")))
    if destroy and protocol == 6:
        body += _attr(CTA_PROTOINFO, _attr(1, _attr(1, bytes([TCP_CLOSE]))))
    kind = IPCTNL_MSG_CT_DELETE if destroy else IPCTNL_MSG_CT_NEW
    header = struct.pack("=IHHII", 16 + 4 + len(body), NFNL_SUBSYS_CTNETLINK << 8 | kind, 0, 0,
                         0)
    return header + struct.pack("=BBH", socket.AF_INET, 0, 0) + body


def send_to(fileno, data):
    """Unicasts messages into the netlink socket `fileno` (needs CAP_NET_ADMIN),
    where the source reads them as the kernel's."""
    target = socket.fromfd(fileno, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    portid = target.getsockname()[0]
    target.close()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sender:
        sender.bind((0, 0))
        sender.sendto(data, (portid, 0))


def in_own_netns(function):
    """function() run in a forked child in a new network namespace (no
    conntrack event of anyone else's reaches its sockets); its JSON result,
    or the child's error as an AssertionError."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        os.close(reader)
        try:
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            result = {"ok": function()}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            result = {"error": f"{type(e).__name__}: {e}"}
        os.write(writer, json.dumps(result).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    if "error" in result:
        raise AssertionError(result["error"])
    return result["ok"]
