"""rtnetlink over a plain non-blocking socket: the few messages the
enrichment stage reads in Python (route and rule change notifications, the
neighbour table), packed and parsed with struct; route lookups and the
rules' dump are asked and parsed in C (cmeter/route_lookup.c) on a socket
opened here.

Nothing here waits: send() says when the kernel's queue is full, receive()
returns what is there.  The kernel answers RTM_GETROUTE within the sending
call (rtnetlink runs in the sender's context), so an answer is usually
readable at once; the loop's selector covers the rest.
"""

import errno
import socket
import struct

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP = 0x1, 0x2, 0x300

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE = 32, 33

# multicast groups (linux/rtnetlink.h, enum rtnetlink_groups)
RTNLGRP_NEIGH = 3
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV4_RULE = 8
RTNLGRP_IPV6_ROUTE = 11
RTNLGRP_IPV6_RULE = 19

RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY = 1, 2, 3, 4, 5
RTA_TABLE, RTA_MARK, RTA_VIA = 15, 16, 18
RTN_UNICAST, RTN_LOCAL = 1, 2
NDA_DST, NDA_LLADDR = 1, 2
# neighbour states worth naming a device by (not INCOMPLETE, FAILED)
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80

FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
ADDRESS_LENGTH = {socket.AF_INET: 4, socket.AF_INET6: 16}

HEADER = struct.Struct("=IHHII")     # nlmsghdr: length, type, flags, sequence, port id
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
#                                      type, flags
NDMSG = struct.Struct("=BxxxiHBB")   # family, ifindex, state, flags, type
ATTRIBUTE = struct.Struct("=HH")
U32 = struct.Struct("=I")
ERROR_CODE = struct.Struct("=i")


def _align(length):
    return (length + 3) & ~3


def attribute(kind, value):
    header = ATTRIBUTE.pack(ATTRIBUTE.size + len(value), kind)
    return (header + value).ljust(_align(ATTRIBUTE.size + len(value)), b"\0")


def attributes(data, offset=0):
    """{type: value bytes} of the attributes in data[offset:]."""
    found = {}
    while offset + ATTRIBUTE.size <= len(data):
        length, kind = ATTRIBUTE.unpack_from(data, offset)
        if length < ATTRIBUTE.size:
            break
        found[kind & 0x3FFF] = bytes(data[offset + ATTRIBUTE.size:offset + length])
        offset += _align(length)
    return found


class Message:
    __slots__ = ("type", "flags", "sequence", "payload")

    def __init__(self, kind, flags, sequence, payload):
        self.type, self.flags, self.sequence, self.payload = kind, flags, sequence, payload

    @property
    def error(self):
        """For NLMSG_ERROR: the errno (0 is an acknowledgement)."""
        return -ERROR_CODE.unpack_from(self.payload)[0]


class Overrun(Exception):
    """The kernel dropped messages for this socket (ENOBUFS): whatever the
    messages would have said, assume everything changed."""


class NetlinkSocket:
    def __init__(self, groups=(), receive_buffer=1 << 20):
        self.socket = socket.socket(socket.AF_NETLINK,
                                    socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                    NETLINK_ROUTE)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self.socket.bind((0, 0))
            for group in groups:
                self.socket.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        except OSError:
            self.socket.close()
            raise
        self.sequence = 0
        self._buffer = bytearray(1 << 16)

    def fileno(self):
        return self.socket.fileno()

    def send(self, kind, flags, payload):
        """The request's sequence number, or None when the kernel's queue is
        full now (try again once answers are read)."""
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF or 1
        message = HEADER.pack(HEADER.size + len(payload), kind, NLM_F_REQUEST | flags,
                              self.sequence, 0) + payload
        try:
            self.socket.sendto(message, (0, 0))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                return None
            raise
        return self.sequence

    def receive(self, limit=256):
        """Messages waiting now (at most `limit` datagrams read); [] when
        none.  Raises Overrun when the kernel dropped some."""
        messages = []
        for _ in range(limit):
            try:
                length = self.socket.recv_into(self._buffer)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    raise Overrun() from None
                raise
            view = memoryview(self._buffer)[:length]
            offset = 0
            while offset + HEADER.size <= length:
                size, kind, flags, sequence, _ = HEADER.unpack_from(view, offset)
                if size < HEADER.size or offset + size > length:
                    break
                messages.append(Message(kind, flags, sequence,
                                        bytes(view[offset + HEADER.size:offset + size])))
                offset += _align(size)
        return messages

    def close(self):
        self.socket.close()


def neighbour_dump_request(family=socket.AF_UNSPEC):
    return NDMSG.pack(family, 0, 0, 0, 0)


def parse_neighbour(payload):
    """(family, ifindex, state, address bytes, link-layer address bytes)."""
    family, ifindex, state, _, _ = NDMSG.unpack_from(payload)
    found = attributes(payload, NDMSG.size)
    return family, ifindex, state, found.get(NDA_DST, b""), found.get(NDA_LLADDR, b"")
