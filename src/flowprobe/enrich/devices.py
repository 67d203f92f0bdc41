"""Which of the user's devices an address belongs to: a name and a MAC
address, from what the router already keeps.

- dnsmasq's lease file (DHCPv4: expiry, MAC, address, name, client id; and
  its DHCPv6 lines after `duid`: expiry, IAID, address, name, DUID);
- odhcpd's lease file (DHCPv6: `# iface duid iaid name valid hostid
  length address/length ...`);
- static hosts in /etc/config/dhcp (`config host`: name, mac, ip);
- the kernel's neighbour table (RTM_GETNEIGH and RTNLGRP_NEIGH): address
  to MAC for everything on a local link, so an IPv6 privacy address joins
  its device by the MAC its DHCPv4 lease or static host names.

Every table is bounded: the neighbours by capacity (the oldest leave
first, counted), what the files name by their size (MAX_FILE_BYTES each,
a few ten thousand entries at most).  The loop never waits: files are small, local, re-read only
when their stat changes (at the tick), opened with O_NOFOLLOW | O_NONBLOCK
and read up to MAX_FILE_BYTES, and must be regular files (a symlink planted
in /tmp is refused, said once); the neighbour socket is non-blocking.

device(address) is the function other stages call (the control's flow
list, the history store later).
"""

import logging
import os
import selectors
import socket
import stat

from flowprobe.addresses import packed_address
from flowprobe.config import ConfigError, read_sections
from flowprobe.enrich import netlink as nl

log = logging.getLogger("flowprobe")

MAX_FILE_BYTES = 1 << 20     # ~10000 leases: far beyond a home or office router
MAX_NAME = 63                # a DNS label


def _packed(text):
    """An address as 16 bytes (IPv4 in the first 4, as in records), or None."""
    try:
        return packed_address(text.split("%")[0]).ljust(16, b"\0")
    except ValueError:
        return None


def _mac(text):
    """aa:bb:cc:dd:ee:ff (any case, - or :) as 6 bytes, or None."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        return None
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        return None


def _name(text):
    """A host name as it may be shown, or None for dnsmasq's '*' and
    odhcpd's '-' (no name given) and anything unprintable."""
    if text in ("*", "-", "") or not text.isprintable() or len(text) > MAX_NAME:
        return None
    return text


def mac_text(mac):
    return ":".join(f"{b:02x}" for b in mac)


def parse_dnsmasq_leases(text):
    """[(address bytes, MAC bytes or None, name or None)]."""
    leases = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4 or words[0] == "duid":
            continue
        address = _packed(words[2])
        if address is None:
            continue
        mac = _mac(words[1]) if "." in words[2] else None   # DHCPv6 lines carry an IAID there
        leases.append((address, mac, _name(words[3])))
    return leases


def parse_odhcpd_leases(text):
    """[(address bytes, None, name or None)] from odhcpd's lease file."""
    leases = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 9 or words[0] != "#":
            continue
        name = _name(words[4])
        for word in words[8:]:
            address = _packed(word.split("/")[0])
            if address is not None:
                leases.append((address, None, name))
    return leases


def parse_static_hosts(text, source):
    """[(address bytes or None, MAC bytes or None, name)] of `config host`."""
    hosts = []
    for section in read_sections(text, source):
        if section.type != "host":
            continue
        name = section.options.get("name")
        name = _name(name) if isinstance(name, str) else None
        if name is None:
            continue
        macs = section.options.get("mac", "")
        macs = " ".join(macs) if isinstance(macs, list) else macs
        ip = section.options.get("ip")
        address = _packed(ip) if isinstance(ip, str) else None
        found = [m for m in (_mac(word) for word in macs.split()) if m]
        for mac in found or [None]:
            hosts.append((address, mac, name))
    return hosts


class SourceFile:
    """A file re-read when its stat changes; what went wrong, said once."""

    def __init__(self, path, parse):
        self.path, self.parse = path, parse
        self.stamp = None
        self.entries = []
        self.error = None

    def refresh(self):
        """True when the entries changed."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            changed = self.stamp is not None
            self.stamp, self.entries, self.error = None, [], None
            return changed
        except OSError as e:
            return self._failed(str(e))
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        try:
            text = self._read()
            self.entries = self.parse(text)
        except (OSError, ValueError, ConfigError) as e:
            return self._failed(str(e))
        self.error = None
        return True

    def _read(self):
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("not a regular file")
            data = os.read(fd, MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        return data.decode("utf-8", errors="replace")

    def _failed(self, reason):
        message = f"device names: {self.path}: {reason}; not used"
        if message != self.error:
            log.warning("%s", message)
        self.error, self.entries = message, []
        return True


class DeviceTable:
    def __init__(self, lease_file="/tmp/dhcp.leases", odhcpd_lease_file="/tmp/hosts/odhcpd",
                 hosts_config="/etc/config/dhcp", capacity=4096, neighbours=True):
        self.capacity = capacity
        self.files = [SourceFile(lease_file, parse_dnsmasq_leases),
                      SourceFile(odhcpd_lease_file, parse_odhcpd_leases),
                      SourceFile(hosts_config, lambda text: parse_static_hosts(text,
                                                                               hosts_config))]
        self.neighbours = {}        # address bytes -> MAC bytes
        self.macs = {}              # address bytes -> MAC bytes (DHCPv4 leases, static hosts)
        self.names = {}             # address bytes -> name
        self.names_by_mac = {}      # MAC bytes -> name
        self.counters = dict(neighbours_evicted=0, neighbour_overruns=0)
        self.socket = None
        if neighbours:
            self.socket = nl.NetlinkSocket(groups=(nl.RTNLGRP_NEIGH,), receive_buffer=256 << 10)
            self._dump()
        self.refresh()

    # ---- what other stages ask ----

    def device(self, address):
        """{"name": ..., "mac": ...} for an address (16 bytes, or text), with
        what is known; None when nothing is."""
        if isinstance(address, str):
            address = _packed(address)
            if address is None:
                return None
        mac = self.macs.get(address) or self.neighbours.get(address)
        name = self.names.get(address) or (self.names_by_mac.get(mac) if mac else None)
        if name is None and mac is None:
            return None
        device = {}
        if name:
            device["name"] = name
        if mac:
            device["mac"] = mac_text(mac)
        return device

    def annotate(self, flows):
        """Adds src_device / dst_device to flow dicts (the control's flow list)."""
        for flow in flows:
            for side in ("src", "dst"):
                device = self.device(flow.get(f"{side}_addr", ""))
                if device:
                    flow[f"{side}_device"] = device
        return flows

    # ---- keeping up ----

    def refresh(self):
        """The files again where they changed (at the loop's tick)."""
        if not any([f.refresh() for f in self.files]):
            return
        macs, names, names_by_mac = {}, {}, {}
        for source in self.files:
            for address, mac, name in source.entries:
                if address and mac:
                    macs[address] = mac
                if address and name:
                    names[address] = name
                if mac and name:
                    names_by_mac[mac] = name
        self.macs, self.names, self.names_by_mac = macs, names, names_by_mac

    def _dump(self):
        self.socket.send(nl.RTM_GETNEIGH, nl.NLM_F_DUMP, nl.neighbour_dump_request())

    def read_neighbours(self):
        try:
            messages = self.socket.receive()
        except nl.Overrun:   # missed changes (deletions too): the whole table again
            self.counters["neighbour_overruns"] += 1
            self.neighbours.clear()
            self._dump()
            return
        for message in messages:
            if message.type not in (nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH):
                continue
            family, _, state, address, mac = nl.parse_neighbour(message.payload)
            if family not in (socket.AF_INET, socket.AF_INET6) or not address:
                continue
            key = address.ljust(16, b"\0")
            # loopback and NOARP links list all-zero addresses: no device
            if (message.type == nl.RTM_DELNEIGH or not state & nl.NUD_USABLE or len(mac) != 6
                    or mac == bytes(6)):
                self.neighbours.pop(key, None)
                continue
            self.neighbours.pop(key, None)   # re-inserted: the newest last
            if len(self.neighbours) >= self.capacity:
                del self.neighbours[next(iter(self.neighbours))]
                self.counters["neighbours_evicted"] += 1
            self.neighbours[key] = mac

    def watched(self):
        if self.socket is None:
            return []
        return [(self.socket.fileno(), selectors.EVENT_READ,
                 lambda events: self.read_neighbours())]

    def stats(self):
        return dict(self.counters, neighbours=len(self.neighbours), named_addresses=len(self.names),
                    named_macs=len(self.names_by_mac),
                    device_sources=[{"path": f.path, "entries": len(f.entries), "error": f.error}
                                    for f in self.files])

    def close(self):
        if self.socket:
            self.socket.close()
