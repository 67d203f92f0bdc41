"""Real collectors as test oracles for flowprobe's exporters.

- Nfcapd: nfdump's collector (Debian nfdump 1.7.1) on a loopback UDP port; flows are read back
  with nfdump's JSON output and normalised to one dict shape.
- DatagramRecorder: a UDP (or TCP) sink that keeps what arrives and writes it to a classic pcap
  with synthetic headers, so tshark's cflow dissector can judge the bytes.
- tshark_decode / tshark_problems / cflow_totals / sequence_problems: what tshark 4.0 sees in
  such a pcap, and totals to compare with the meter's.
- Nfacctd: pmacct's collector (Debian pmacct 1.7.7) with its print plugin writing JSON, one
  line per record (keyed by the 5-tuple and the times), flushed when it stops.

Independent of flowprobe's own code on purpose: an oracle must not share the code it judges.
Targets are loopback only (127.0.0.1 or ::1).
"""

import datetime
import ipaddress
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from captures import pcapfile

NFCAPD = shutil.which("nfcapd") or "/usr/bin/nfcapd"
NFDUMP = shutil.which("nfdump") or "/usr/bin/nfdump"
TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
SOFTFLOWD = shutil.which("softflowd") or "/usr/sbin/softflowd"
NFACCTD = shutil.which("nfacctd") or "/usr/sbin/nfacctd"

IPFIX_REVERSE_PEN = 29305  # RFC 5103 reverse information elements


class ToolError(RuntimeError):
    """A collector tool failed; the message carries its command and output."""


def missing_tools(*paths):
    """A skip reason naming the tools that are not installed, or None when all are."""
    missing = [p for p in paths if not os.access(p, os.X_OK)]
    if not missing:
        return None
    return "not installed: " + ", ".join(missing) + " (apt-get install nfdump tshark softflowd)"


def _family(host):
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def free_udp_port(host="127.0.0.1"):
    """A UDP port nothing is bound to on host right now (the kernel's pick)."""
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_tcp_port(host="127.0.0.1"):
    """A TCP port nothing is bound to on host right now (the kernel's pick)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def udp_sockets(port, pid=None):
    """Kernel view of UDP sockets bound to port: dicts with inode, rx_queue (bytes not yet
    read by the owner) and drops (datagrams lost to a full buffer), from /proc/net/udp{,6}
    (of process pid's network namespace when given)."""
    found = []
    base = f"/proc/{pid}/net" if pid else "/proc/net"
    for table in (f"{base}/udp", f"{base}/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                found.append({"inode": int(cols[9]),
                              "rx_queue": int(cols[4].split(":")[1], 16),
                              "drops": int(cols[12])})
    return found


def own_udp_socket(process, port):
    """The /proc/net/udp state of the socket process has bound to port: its
    rx_queue and drops (None when the process is not running)."""
    if process is None or process.poll() is not None:
        return None
    owned = _socket_inodes(process.pid)
    for state in udp_sockets(port, process.pid):
        if state["inode"] in owned:
            return state
    return None


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


# nfdump prints TCP flags as 8 characters, CWR first; '.' marks a clear bit.
_NFDUMP_FLAG_BITS = (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01)


def _nfdump_tcp_flags(text):
    if text is None:
        return None
    return sum(bit for bit, char in zip(_NFDUMP_FLAG_BITS, text) if char != ".")


def _nfdump_time_ms(text):
    # nfdump prints local time; Nfcapd runs nfdump with TZ=UTC so this is UTC.
    if not text:
        return None
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")
    return round(moment.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def normalise_nfdump_flow(raw):
    """One nfdump 1.7.1 JSON record in flowprobe's terms.

    ICMP/ICMPv6: nfdump's JSON has icmp_type/icmp_code instead of ports; they are mapped as
    nfdump's own csv output does: src_port 0, dst_port type*256+code.
    Biflows: nfdump 1.7.1 keeps the RFC 5103 reverse counters (PEN 29305 reverse octet/packet
    delta counts) as out_bytes/out_packets; here reverse_octets/reverse_packets (None when the
    record has none)."""
    protocol = raw.get("proto")
    src = raw.get("src4_addr") or raw.get("src6_addr")
    dst = raw.get("dst4_addr") or raw.get("dst6_addr")
    if "icmp_type" in raw:
        src_port, dst_port = 0, raw["icmp_type"] * 256 + raw.get("icmp_code", 0)
    else:
        src_port, dst_port = raw.get("src_port", 0), raw.get("dst_port", 0)
    return {
        "protocol": protocol,
        "src_addr": str(ipaddress.ip_address(src)) if src else None,
        "dst_addr": str(ipaddress.ip_address(dst)) if dst else None,
        "src_port": src_port,
        "dst_port": dst_port,
        "packets": raw.get("in_packets"),
        "octets": raw.get("in_bytes"),
        "reverse_packets": raw.get("out_packets"),
        "reverse_octets": raw.get("out_bytes"),
        "first_ms": _nfdump_time_ms(raw.get("first")),
        "last_ms": _nfdump_time_ms(raw.get("last")),
        "tcp_flags": _nfdump_tcp_flags(raw.get("tcp_flags")),
        "in_if": raw.get("input_snmp"),
        "out_if": raw.get("output_snmp"),
        "direction": raw.get("direction"),
        "exporter": raw.get("ip4_router") or raw.get("ip6_router"),
        "raw": raw,
    }


def _parse_key_values(text):
    stats = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        key = key.strip().lower().replace(" ", "_")
        stats[key] = int(value) if value.lstrip("-").isdigit() else value
    return stats


_NFCAPD_ROUTINE = ("Add flow source", "Bound to", "Init ", "Startup", "Ident:", "Terminating")


class Nfcapd:
    """nfcapd on a loopback UDP port, writing into a temporary directory.

    with Nfcapd() as collector:
        export to ("127.0.0.1", collector.port)
        flows = collector.flows()          # stops nfcapd first, so every record is on disk
        assert collector.stats()["sequence_failures"] == 0
    """

    def __init__(self, host="127.0.0.1", port=None, directory=None, rotate_seconds=60,
                 extra_args=(), start_timeout=5.0, netns=None):
        self.host = host
        self.netns = netns  # run inside this network namespace (ip netns exec)
        self.port = port or (free_udp_port(host) if netns is None else 2055)
        self._own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="nfcapd-"))
        self.rotate_seconds = rotate_seconds
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.process = None
        self.returncode = None
        self.final_socket = None
        self._log = None

    @property
    def address(self):
        return (self.host, self.port)

    def command(self):
        family = "-6" if _family(self.host) == socket.AF_INET6 else "-4"
        # -C none: no site config file may change the options under test.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, NFCAPD, "-w", str(self.directory), "-b", self.host, "-p",
                str(self.port), family, "-t", str(self.rotate_seconds), "-C", "none",
                *self.extra_args]

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.command(), stdout=self._log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ToolError(f"nfcapd exited with {self.process.returncode} before binding "
                                f"{self.host}:{self.port}:\n{self.log()}")
            owned = _socket_inodes(self.process.pid)
            if any(s["inode"] in owned for s in udp_sockets(self.port, self.process.pid)):
                return self
            time.sleep(0.01)
        self.stop()
        raise ToolError(f"nfcapd did not bind {self.host}:{self.port} within "
                        f"{self.start_timeout}s:\n{self.log()}")

    def socket_state(self):
        """rx_queue and drops of nfcapd's socket (None when it is not running)."""
        return own_udp_socket(self.process, self.port)

    def drain(self, timeout=5.0):
        """Wait until nfcapd has read every datagram queued on its socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.socket_state()
            if state is None or state["rx_queue"] == 0:
                return state
            time.sleep(0.01)
        raise ToolError(f"nfcapd left datagrams unread for {timeout}s")

    def stop(self, timeout=10.0):
        """Let nfcapd read what is queued, then SIGTERM and wait: the file is complete after.
        Returns nfcapd's exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.final_socket = self.drain()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired as expired:
                self.process.kill()
                self.process.wait()
                raise ToolError(f"nfcapd ignored SIGTERM for {timeout}s:\n{self.log()}") \
                    from expired
        self.returncode = self.process.returncode
        return self.returncode

    def close(self):
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log(self):
        """What nfcapd printed (its per-file 'Ident: ... Sequence Errors ...' lines among it)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def complaints(self):
        """nfcapd log lines other than its routine start, file and stop messages: what it
        found wrong in the datagrams (e.g. "Process_v5: Unexpected record count ...")."""
        return [line for line in self.log().splitlines()
                if line.strip() and not line.startswith(_NFCAPD_ROUTINE)
                and ": New " not in line]

    def files(self):
        return sorted(p for p in self.directory.iterdir()
                      if p.name.startswith("nfcapd.") and not p.name.startswith("nfcapd.current"))

    def nfdump(self, *args):
        """Run nfdump over every file nfcapd wrote (stopping nfcapd first); its stdout."""
        self.stop()
        if not self.files():
            return None
        command = [NFDUMP, "-R", str(self.directory), *args]
        result = subprocess.run(command, capture_output=True, text=True,
                                env={**os.environ, "TZ": "UTC"})
        if result.returncode != 0:
            raise ToolError(f"{' '.join(command)} failed ({result.returncode}):\n"
                            f"{result.stdout}{result.stderr}")
        return result.stdout

    def raw_flows(self):
        """nfdump's JSON records unchanged."""
        text = self.nfdump("-o", "json")
        if text is None:
            return []
        # nfdump 1.7.1 prints "No matching flows" inside the JSON brackets when empty
        text = text.replace("No matching flows", "")
        return json.loads(text)

    def flows(self):
        """Every record nfcapd stored, normalised (see normalise_nfdump_flow)."""
        return [normalise_nfdump_flow(raw) for raw in self.raw_flows()]

    def stats(self):
        """nfdump -I summary (flows, packets, bytes, per protocol, sequence_failures, ...) plus
        nfcapd's own counters summed over its log lines: sequence_errors, bad_packets.
        Also kernel_drops: datagrams the kernel dropped before nfcapd read them."""
        text = self.nfdump("-I")
        stats = _parse_key_values(text) if text else {"flows": 0, "sequence_failures": 0}
        stats["sequence_errors"] = stats["bad_packets"] = 0
        for line in self.log().splitlines():
            if line.startswith("Ident:"):
                for part in line.split(","):
                    key, _, value = part.strip().rpartition(": ")
                    key = key.split("'")[-1].strip().lower().replace(" ", "_")
                    if key in ("sequence_errors", "bad_packets") and value.isdigit():
                        stats[key] += int(value)
        stats["kernel_drops"] = self.final_socket["drops"] if self.final_socket else 0
        return stats


class Received:
    """One datagram, or one TCP connection's byte stream."""

    def __init__(self, peer, time_s, data=b""):
        self.peer = peer          # (address, port) of the sender
        self.time = time_s        # arrival (first chunk) time, seconds since the epoch
        self.chunks = [(time_s, data)] if data else []
        self.closed_time = None   # TCP: when the peer closed

    @property
    def data(self):
        return b"".join(chunk for _, chunk in self.chunks)

    def __repr__(self):
        return f"Received(peer={self.peer}, {len(self.data)} bytes)"


class DatagramRecorder:
    """A loopback UDP (or, tcp=True, TCP) sink recording what arrives, in a thread.

    .datagrams: Received per UDP datagram; .streams: Received per TCP connection (chunks
    as recv() returned them).  write_pcap() turns them into frames tshark can dissect."""

    def __init__(self, host="127.0.0.1", tcp=False, port=None, receive_buffer=4 << 20):
        self.host = host
        self.tcp = tcp
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        self._socket = socket.socket(_family(host), kind)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._socket.bind((host, port or 0))
        self.port = self._socket.getsockname()[1]
        self.datagrams = []
        self.streams = []
        self._lock = threading.Lock()
        self._last_arrival = 0.0
        self._stopping = threading.Event()
        self._thread = None

    @property
    def address(self):
        return (self.host, self.port)

    def start(self):
        if self.tcp:
            self._socket.listen(16)
        self._socket.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="DatagramRecorder", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        selector = selectors.DefaultSelector()
        selector.register(self._socket, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=0.05):
                    if not self.tcp:
                        self._receive_datagrams()
                    elif key.data is None:
                        self._accept(selector)
                    else:
                        self._receive_stream(selector, key.fileobj, key.data)
        finally:
            for key in list(selector.get_map().values()):
                if key.data is not None:
                    key.fileobj.close()
            selector.close()

    def _receive_datagrams(self):
        while True:
            try:
                data, peer = self._socket.recvfrom(65535)
            except BlockingIOError:
                return
            now = time.time()
            with self._lock:
                self.datagrams.append(Received(peer[:2], now, data))
                self._last_arrival = now

    def _accept(self, selector):
        connection, peer = self._socket.accept()
        connection.setblocking(False)
        stream = Received(peer[:2], time.time())
        with self._lock:
            self.streams.append(stream)
            self._last_arrival = stream.time
        selector.register(connection, selectors.EVENT_READ, stream)

    def _receive_stream(self, selector, connection, stream):
        try:
            data = connection.recv(1 << 20)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b""
        now = time.time()
        with self._lock:
            self._last_arrival = now
            if data:
                stream.chunks.append((now, data))
            else:
                stream.closed_time = now
        if not data:
            selector.unregister(connection)
            connection.close()

    def received(self):
        """Datagrams (UDP) or connections (TCP) so far."""
        with self._lock:
            return list(self.streams if self.tcp else self.datagrams)

    def wait(self, count=1, timeout=5.0, quiet=0.2):
        """Wait until at least count datagrams (TCP: closed connections) have arrived and
        nothing more for quiet seconds. True when that happened within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                items = self.streams if self.tcp else self.datagrams
                done = [s for s in items if not self.tcp or s.closed_time is not None]
                idle = time.time() - self._last_arrival
            if len(done) >= count and idle >= quiet:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._socket.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def write_pcap(self, path):
        """A classic pcap (Ethernet) of what arrived, with synthetic IP/UDP headers from the
        real sender address to the recorder's; TCP: a handshake, one segment per recv()
        chunk with consistent sequence numbers, and a FIN exchange, so tshark reassembles."""
        frames = []
        with self._lock:
            datagrams, streams = list(self.datagrams), list(self.streams)
        for datagram in datagrams:
            frames.append((datagram.time,
                           _udp_frame(datagram.peer, self.address, datagram.data)))
        for stream in streams:
            frames.extend(_tcp_frames(stream, self.address))
        frames.sort(key=lambda frame: frame[0])
        write_classic_pcap(path, frames)
        return path


# ---- synthetic frames --------------------------------------------------------------------

LINKTYPE_ETHERNET = 1
_MAC_SENDER = bytes.fromhex("020000000001")
_MAC_RECEIVER = bytes.fromhex("020000000002")


def write_classic_pcap(path, frames, linktype=LINKTYPE_ETHERNET):
    """frames: (time_seconds, bytes). Microsecond pcap, snaplen large enough for 64 KiB IP."""
    return pcapfile.write(path, [(round(time_s * 1_000_000), data) for time_s, data in frames],
                          linktype, snaplen=262144)


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


_ip_id = 0


def _ip_frame(source, destination, protocol, transport):
    """Ethernet + IPv4/IPv6 header around transport (whose checksum is at checksum_at)."""
    global _ip_id
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    if src.version == 4:
        _ip_id = (_ip_id + 1) & 0xFFFF
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), _ip_id, 0x4000,
                             64, protocol, 0, src.packed, dst.packed)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return _MAC_RECEIVER + _MAC_SENDER + b"\x08\x00" + header + transport
    header = struct.pack("!IHBB16s16s", 0x60000000, len(transport), protocol, 64,
                         src.packed, dst.packed)
    return _MAC_RECEIVER + _MAC_SENDER + b"\x86\xdd" + header + transport


def _with_checksum(source, destination, protocol, transport, offset):
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, protocol, len(transport))
    else:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(transport), protocol)
    value = _checksum(pseudo + transport) or 0xFFFF
    return transport[:offset] + struct.pack("!H", value) + transport[offset + 2:]


def _udp_frame(source, destination, payload):
    udp = struct.pack("!HHHH", source[1], destination[1], 8 + len(payload), 0) + payload
    udp = _with_checksum(source[0], destination[0], 17, udp, 6)
    return _ip_frame(source[0], destination[0], 17, udp)


_TCP_FIN, _TCP_SYN, _TCP_PSH, _TCP_ACK = 0x01, 0x02, 0x08, 0x10
_TCP_SEGMENT_LIMIT = 65000  # fits an IPv4 total length with room for headers


def _tcp_frame(source, destination, seq, ack, flags, payload=b""):
    tcp = struct.pack("!HHIIBBHHH", source[1], destination[1], seq & 0xFFFFFFFF,
                      ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0) + payload
    tcp = _with_checksum(source[0], destination[0], 6, tcp, 16)
    return _ip_frame(source[0], destination[0], 6, tcp)


def _tcp_frames(stream, server):
    client = stream.peer
    client_seq, server_seq = 1000, 5000
    frames = [(stream.time, _tcp_frame(client, server, client_seq, 0, _TCP_SYN)),
              (stream.time, _tcp_frame(server, client, server_seq, client_seq + 1,
                                       _TCP_SYN | _TCP_ACK)),
              (stream.time, _tcp_frame(client, server, client_seq + 1, server_seq + 1,
                                       _TCP_ACK))]
    client_seq, server_seq = client_seq + 1, server_seq + 1
    last_time = stream.time
    for time_s, chunk in stream.chunks:
        for start in range(0, len(chunk), _TCP_SEGMENT_LIMIT):
            segment = chunk[start:start + _TCP_SEGMENT_LIMIT]
            frames.append((time_s, _tcp_frame(client, server, client_seq, server_seq,
                                              _TCP_PSH | _TCP_ACK, segment)))
            client_seq += len(segment)
        last_time = time_s
    if stream.closed_time is not None:
        end = stream.closed_time
        frames += [(end, _tcp_frame(client, server, client_seq, server_seq,
                                    _TCP_FIN | _TCP_ACK)),
                   (end, _tcp_frame(server, client, server_seq, client_seq + 1,
                                    _TCP_FIN | _TCP_ACK)),
                   (end, _tcp_frame(client, server, client_seq + 1, server_seq + 1,
                                    _TCP_ACK))]
    else:
        frames.append((last_time, _tcp_frame(server, client, server_seq, client_seq, _TCP_ACK)))
    return frames


# ---- tshark ------------------------------------------------------------------------------

_SEVERITIES = {0x00200000: "chat", 0x00400000: "note", 0x00600000: "warn", 0x00800000: "error"}
_SEVERITY_RANK = {"chat": 1, "note": 2, "warn": 3, "error": 4}
_EXPERT_GROUPS = {0x01000000: "Checksum", 0x02000000: "Sequence", 0x03000000: "Response code",
                  0x04000000: "Request code", 0x05000000: "Undecoded", 0x06000000: "Reassemble",
                  0x07000000: "Malformed", 0x08000000: "Debug", 0x09000000: "Protocol",
                  0x0A000000: "Security", 0x0B000000: "Comment", 0x0C000000: "Decryption",
                  0x0D000000: "Assumption", 0x0E000000: "Deprecated"}


def _run_tshark_pdml(pcap_path, port, transport, decoder="cflow", preferences=()):
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
    command = [TSHARK, "-n", "-r", str(pcap_path), "-d", f"{transport}.port=={port},{decoder}",
               "-T", "pdml"]
    for preference in preferences:
        command += ["-o", preference]
    if transport == "tcp":
        command += ["-o", "tcp.desegment_tcp_streams:TRUE"]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        raise ToolError(f"{' '.join(command)} failed ({result.returncode}):\n"
                        f"{result.stderr.decode(errors='replace')}")
    return ElementTree.fromstring(result.stdout)


def _fields(element):
    return element.findall("field")


def _first(element, name):
    for field in element.iter("field"):
        if field.get("name") == name:
            return field.get("show")
    return None


def _int_or_none(text):
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def _add_value(fields, name, value):
    if name in fields:
        if not isinstance(fields[name], list):
            fields[name] = [fields[name]]
        fields[name].append(value)
    else:
        fields[name] = value


def _record_fields(record):
    """name -> show for every named field under a record (nested ones too). RFC 5103 reverse
    fields, which tshark names like the forward ones and labels '(Reverse Type ...)', are
    keyed 'reverse:<name>', their subfields too. A name seen twice gets a list of values, in
    wire order."""
    fields = {}

    def walk(element, reverse):
        for field in _fields(element):
            name = field.get("name")
            is_reverse = reverse or "(Reverse Type" in (field.get("showname") or "")
            if name and not name.startswith("_ws."):
                _add_value(fields, ("reverse:" if is_reverse else "") + name, field.get("show"))
            walk(field, is_reverse)

    walk(record, False)
    return fields


def _template(element, options):
    fields = []
    for field in _fields(element):
        label = field.get("show") or ""
        if not label.startswith("Field"):
            continue
        field_type = (_first(field, "cflow.template_ipfix_field_type")
                      or _first(field, "cflow.template_field_type")
                      or _first(field, "cflow.scope_field_type"))
        fields.append({"enterprise": _int_or_none(_first(field, "cflow.template_ipfix_field_pen"))
                       or 0,
                       "type": _int_or_none(field_type),
                       "length": _int_or_none(_first(field, "cflow.template_field_length")),
                       "scope": "[Scope]" in label,
                       "label": label.split(": ", 1)[-1]})
    return {"template_id": _int_or_none(_first(element, "cflow.template_id")),
            "options": options, "fields": fields}


def _message(proto, frame, exporter, known_templates):
    header = {}
    for field in _fields(proto):
        if field.get("name"):
            header[field.get("name")] = field.get("show")
            for child in field.iter("field"):
                if child is not field and child.get("name"):
                    header.setdefault(child.get("name"), child.get("show"))
    version = _int_or_none(header.get("cflow.version"))
    domain = header.get("cflow.od_id") if version == 10 else header.get("cflow.source_id")
    message = {
        "frame": frame["number"], "time": frame["time"], "exporter": exporter,
        "udp_payload": frame["udp_payload"],
        "version": version,
        "sequence": _int_or_none(header.get("cflow.sequence")),
        "domain": _int_or_none(domain),
        "count": _int_or_none(header.get("cflow.count")),
        "length": _int_or_none(header.get("cflow.len")),
        "export_time": _int_or_none(header.get("cflow.exporttime")
                                    or header.get("cflow.unix_secs")),
        "header": header, "sets": [], "templates": [], "records": [],
    }
    template_set_ids = {10: (2, 3), 9: (0, 1)}.get(version, ())
    for element in _fields(proto):
        label = element.get("show") or ""
        if element.get("name"):
            continue
        if label.startswith("pdu "):  # NetFlow v5 record
            message["records"].append({"set_id": None, "kind": "data",
                                       "fields": _record_fields(element)})
            continue
        if not (label.startswith("Set ") or label.startswith("FlowSet ")):
            continue
        set_id = _int_or_none(_first(element, "cflow.flowset_id"))
        entry = {"set_id": set_id, "length": _int_or_none(_first(element, "cflow.flowset_length")),
                 "label": label, "records": 0}
        if set_id in template_set_ids:
            options = set_id == template_set_ids[1]
            entry["kind"] = "options_template" if options else "template"
            for child in _fields(element):
                if not child.get("name") and "Template" in (child.get("show") or ""):
                    template = _template(child, options)
                    message["templates"].append(template)
                    known_templates[(exporter, message["domain"], template["template_id"])] = \
                        "options" if options else "data"
                    entry["records"] += 1
        else:
            kind = known_templates.get((exporter, message["domain"], set_id), "unknown")
            entry["kind"] = kind
            for child in _fields(element):
                if not child.get("name") and (child.get("show") or "").startswith("Flow "):
                    message["records"].append({"set_id": set_id, "kind": kind,
                                               "fields": _record_fields(child)})
                    entry["records"] += 1
        message["sets"].append(entry)
    return message


def _frame_info(packet):
    frame = {"number": None, "time": None, "src": None, "sport": None, "udp_payload": None}
    for proto in packet.findall("proto"):
        name = proto.get("name")
        if name == "frame":
            frame["number"] = _int_or_none(_first(proto, "frame.number"))
            frame["time"] = float(_first(proto, "frame.time_epoch") or 0)
        elif name in ("ip", "ipv6"):
            frame["src"] = _first(proto, "ip.src" if name == "ip" else "ipv6.src")
        elif name in ("udp", "tcp"):
            frame["sport"] = _first(proto, f"{name}.srcport")
            if name == "udp":
                frame["udp_payload"] = (_int_or_none(_first(proto, "udp.length")) or 8) - 8
    return frame


def tshark_decode(pcap_path, port, transport="udp"):
    """Every NetFlow/IPFIX message tshark's cflow dissector finds in the pcap, as dicts:

    frame, time (capture epoch seconds), exporter ("addr:port"), udp_payload (datagram
    length, None over TCP), version, sequence, domain
    (IPFIX observation domain / v9 source id), count (v5/v9 header), length (IPFIX header),
    export_time (unix seconds), header (header fields by tshark name), sets (set_id, kind,
    length, records), templates (template_id, options, fields: enterprise/type/length/scope),
    records (set_id, kind: "data" | "options" | "unknown" (no template seen), fields: tshark
    field name -> shown value, e.g. "cflow.srcaddr", "cflow.octets", "reverse:cflow.octets")."""
    root = _run_tshark_pdml(pcap_path, port, transport)
    messages, known_templates = [], {}
    for packet in root.findall("packet"):
        frame = _frame_info(packet)
        host = frame["src"] or ""
        exporter = f"[{host}]:{frame['sport']}" if ":" in host else f"{host}:{frame['sport']}"
        for proto in packet.findall("proto"):
            if proto.get("name") == "cflow":
                messages.append(_message(proto, frame, exporter, known_templates))
    return messages


def tshark_problems(pcap_path, port, transport="udp", min_severity="warn", decoder="cflow",
                    preferences=()):
    """tshark's expert infos of min_severity or worse and malformed packets, as readable
    strings ("frame 2: warn/Sequence: Unexpected flow sequence ..."); [] when all is well.
    decoder: the dissector for the port (cflow: NetFlow/IPFIX; sflow); preferences: -o."""
    root = _run_tshark_pdml(pcap_path, port, transport, decoder, preferences)
    problems = []
    for packet in root.findall("packet"):
        number = _frame_info(packet)["number"]
        reported = False
        for expert in packet.iter("field"):
            if expert.get("name") != "_ws.expert":
                continue
            severity_code = _int_or_none(_first(expert, "_ws.expert.severity")) or 0
            severity = _SEVERITIES.get(severity_code, hex(severity_code))
            if _SEVERITY_RANK.get(severity, 4) < _SEVERITY_RANK[min_severity]:
                continue
            group_code = _int_or_none(_first(expert, "_ws.expert.group")) or 0
            group = _EXPERT_GROUPS.get(group_code, hex(group_code))
            message = _first(expert, "_ws.expert.message")
            problems.append(f"frame {number}: {severity}/{group}: {message}")
            reported = True
        malformed = [p for p in packet.findall("proto")
                     if p.get("name") in ("_ws.malformed", "_ws.short")]
        if malformed and not reported:
            problems.append(f"frame {number}: error/Malformed: {malformed[0].get('showname')}")
    return problems


PACKET_FIELDS = ("cflow.packets",)
OCTET_FIELDS = ("cflow.octets",)


def _sum_values(fields, names):
    total = 0
    for name in names:
        values = fields.get(name, [])
        for value in values if isinstance(values, list) else [values]:
            total += int(value, 0)
    return total


def cflow_totals(messages, packet_fields=PACKET_FIELDS, octet_fields=OCTET_FIELDS):
    """Totals over the decoded data records: messages, data_records, options_records,
    unknown_sets (data sets tshark had no template for), packets, octets, reverse_packets,
    reverse_octets, and records_per_message (data records in each message, in order)."""
    totals = {"messages": len(messages), "data_records": 0, "options_records": 0,
              "unknown_sets": 0, "packets": 0, "octets": 0, "reverse_packets": 0,
              "reverse_octets": 0, "records_per_message": []}
    for message in messages:
        in_message = 0
        totals["unknown_sets"] += sum(1 for s in message["sets"] if s["kind"] == "unknown")
        for record in message["records"]:
            if record["kind"] == "options":
                totals["options_records"] += 1
                continue
            in_message += 1
            fields = record["fields"]
            totals["packets"] += _sum_values(fields, packet_fields)
            totals["octets"] += _sum_values(fields, octet_fields)
            totals["reverse_packets"] += _sum_values(
                fields, ["reverse:" + name for name in packet_fields])
            totals["reverse_octets"] += _sum_values(
                fields, ["reverse:" + name for name in octet_fields])
        totals["data_records"] += in_message
        totals["records_per_message"].append(in_message)
    return totals


def sequence_problems(messages):
    """Sequence numbers that do not follow from the previous message of the same exporter,
    version and domain: v5 adds the previous message's record count (RFC-less Cisco rule),
    v9 adds 1 per message (RFC 3954 5.1), IPFIX adds the previous message's data records,
    options data records included (RFC 7011 3.1).  [] when every step is right.  An IPFIX
    step after a message with a set tshark had no template for is not judged (its record
    count is unknown; tshark_problems reports the missing template)."""
    problems, previous = [], {}
    for message in messages:
        key = (message["exporter"], message["version"], message["domain"])
        if key in previous:
            before = previous[key]
            if message["version"] == 9:
                step = 1
            elif message["version"] == 10:
                if any(s["kind"] == "unknown" for s in before["sets"]):
                    previous[key] = message
                    continue
                step = len(before["records"])
            else:
                step = before["count"] or len(before["records"])
            expected = (before["sequence"] + step) & 0xFFFFFFFF
            if message["sequence"] != expected:
                problems.append(f"frame {message['frame']}: v{message['version']} domain "
                                f"{message['domain']} sequence {message['sequence']}, expected "
                                f"{expected} (frame {before['frame']} had {before['sequence']}"
                                f" + {step})")
        previous[key] = message
    return problems


def structure_problems(messages):
    """Header fields that disagree with the body, which tshark does not flag itself:
    v5 count vs records and length; v9 count vs records (RFC 3954 5.1: template, options
    template and data records together) and undissected bytes (tshark 4.0 stops a v9 packet
    after `count` FlowSets, silently); IPFIX length vs the sets.  [] when all agree."""
    problems = []
    for message in messages:
        where = f"frame {message['frame']}: v{message['version']}"
        set_bytes = sum(s["length"] or 0 for s in message["sets"])
        records = len(message["records"]) + len(message["templates"])
        if message["version"] == 5:
            if message["count"] != len(message["records"]):
                problems.append(f"{where} count {message['count']}, "
                                f"{len(message['records'])} records")
            if message["udp_payload"] not in (None, 24 + 48 * len(message["records"])):
                problems.append(f"{where} {message['udp_payload']} bytes for "
                                f"{len(message['records'])} records")
        elif message["version"] == 9:
            if any(s["kind"] == "unknown" for s in message["sets"]):
                continue  # record count unknown without the template
            if message["count"] != records:
                problems.append(f"{where} count {message['count']}, {records} records "
                                f"(templates {len(message['templates'])} + data)")
            if message["udp_payload"] not in (None, 20 + set_bytes):
                problems.append(f"{where} datagram {message['udp_payload']} bytes, header and "
                                f"dissected FlowSets {20 + set_bytes}")
        elif message["version"] == 10:
            if message["length"] != 16 + set_bytes:
                problems.append(f"{where} length {message['length']}, header and sets "
                                f"{16 + set_bytes}")
            if message["udp_payload"] not in (None, message["length"]):
                problems.append(f"{where} datagram {message['udp_payload']} bytes, length "
                                f"field {message['length']}")
    return problems


# ICMP messages and the type of their answer: a biflow's reverse direction
_ICMP_REPLY = {(1, 8): 0, (1, 0): 8, (1, 13): 14, (1, 14): 13, (58, 128): 129, (58, 129): 128}


def per_flow_key(flows):
    """(packets, octets) per flow key (ip_version, protocol, src, dst, sport,
    dport; ICMP: 0, type*256+code) over normalised nfdump flows; a biflow's
    reverse counters go under the reverse key."""
    totals = {}

    def add(key, packets, octets):
        old = totals.get(key, (0, 0))
        totals[key] = (old[0] + packets, old[1] + octets)

    for f in flows:
        version = 6 if ":" in f["src_addr"] else 4
        key = (version, f["protocol"], f["src_addr"], f["dst_addr"], f["src_port"],
               f["dst_port"])
        add(key, f["packets"], f["octets"])
        if f["reverse_packets"]:
            if f["protocol"] in (1, 58):
                reply = _ICMP_REPLY.get((f["protocol"], f["dst_port"] >> 8), f["dst_port"] >> 8)
                sport, dport = 0, reply << 8 | (f["dst_port"] & 0xFF)
            else:
                sport, dport = f["dst_port"], f["src_port"]
            add((version, f["protocol"], f["dst_addr"], f["src_addr"], sport, dport),
                f["reverse_packets"], f["reverse_octets"])
    return totals


# ---- absolute flow times, as collectors compute them ---------------------------------------

def _tshark_date_ms(text):
    # "Nov 14, 2023 22:13:20.330000000 UTC": nanoseconds cut to microseconds for strptime
    stamp, _, fraction = text.removesuffix(" UTC").partition(".")
    moment = datetime.datetime.strptime(stamp, "%b %d, %Y %H:%M:%S")
    seconds = moment.replace(tzinfo=datetime.timezone.utc).timestamp()
    return round(seconds) * 1000 + int(fraction[:3].ljust(3, "0"))


def _seconds_ms(text):
    # "30.001000000" (tshark's relative times) in milliseconds, without float rounding
    whole, _, fraction = text.partition(".")
    return int(whole) * 1000 + int(fraction[:3].ljust(3, "0"))


def _record_key(fields):
    src = fields.get("cflow.srcaddr") or fields.get("cflow.srcaddrv6")
    dst = fields.get("cflow.dstaddr") or fields.get("cflow.dstaddrv6")
    version = 6 if ":" in src else 4
    return (version, int(fields["cflow.protocol"]), src, dst,
            int(fields.get("cflow.srcport", 0)), int(fields.get("cflow.dstport", 0)))


def _one(value):
    return value[0] if isinstance(value, list) else value


def tshark_flow_times(messages):
    """(key, first_ms, last_ms, first_relative_ms) for every data record tshark decoded.
    IPFIX: flowStart/EndMilliseconds as they are.  NetFlow v9/v5: what a collector computes,
    unix_secs * 1000 (+ v5's unix_nsecs) - sysUptime + FIRST/LAST_SWITCHED; the relative
    FIRST_SWITCHED is kept to check that none is 0 (read as "no time")."""
    times = []
    for message in messages:
        header = message["header"]
        if message["version"] in (5, 9):
            base = (int(header["cflow.unix_secs"]) * 1000
                    + int(header.get("cflow.unix_nsecs", 0)) // 1_000_000
                    - _seconds_ms(header["cflow.sysuptime"]))
        for record in message["records"]:
            if record["kind"] != "data":
                continue
            fields = record["fields"]
            if message["version"] == 10:
                first = _tshark_date_ms(_one(fields["cflow.abstimestart"]))
                last = _tshark_date_ms(_one(fields["cflow.abstimeend"]))
                relative = None
            else:
                relative = _seconds_ms(fields.get("cflow.timestart", "0"))  # tshark omits 0
                first, last = base + relative, base + _seconds_ms(fields.get("cflow.timeend", "0"))
            times.append((_record_key(fields), first, last, relative))
    return times


def nfdump_flow_times(flows):
    """(key, first_ms, last_ms) of normalised nfdump flows (forward direction)."""
    return [((6 if ":" in f["src_addr"] else 4, f["protocol"], f["src_addr"], f["dst_addr"],
              f["src_port"], f["dst_port"]), f["first_ms"], f["last_ms"]) for f in flows]


def time_problems(truth_times, records):
    """Where collected times differ from the capture's: per flow key, the earliest record
    start must be the key's first packet and the latest end its last packet, to the
    millisecond, and every record must lie within them.  truth_times: {key: (first_ms,
    last_ms)}; records: (key, first_ms, last_ms, ...).  [] when all agree."""
    problems, seen = [], {}
    for key, first, last, *_ in records:
        if key not in truth_times:
            problems.append(f"{key}: not in the capture")
            continue
        low, high = truth_times[key]
        if not low <= first <= last <= high:
            problems.append(f"{key}: record {first}..{last} outside the capture's {low}..{high}")
        earliest, latest = seen.get(key, (first, last))
        seen[key] = (min(earliest, first), max(latest, last))
    for key, (low, high) in sorted(truth_times.items(), key=repr):
        if key not in seen:
            problems.append(f"{key}: no record")
        elif seen[key] != (low, high):
            problems.append(f"{key}: records span {seen[key][0]}..{seen[key][1]} "
                            f"({seen[key][0] - low:+d} ms, {seen[key][1] - high:+d} ms), "
                            f"capture {low}..{high}")
    return problems


# ---- pmacct ---------------------------------------------------------------------------------

# one entry per record: the 5-tuple and both times keep records apart
PMACCT_PRIMITIVES = ("peer_src_ip", "src_host", "dst_host", "src_port", "dst_port", "proto",
                     "timestamp_start", "timestamp_end")
_PMACCT_PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmp6": 58}
# a record sent after the others, from an exporter of its own: once pmacct has written it,
# it has written everything sent before
SENTINEL_ADDRESSES = ("192.0.2.254", "192.0.2.253")
SENTINEL_EXPORTER = "127.0.0.2"


def _epoch_ms(text):
    """pmacct's times with timestamps_since_epoch: "1700000001.330000"."""
    whole, _, fraction = str(text).partition(".")
    return int(whole) * 1000 + int(fraction[:3].ljust(3, "0"))


def normalise_pmacct_flow(raw):
    """One entry of pmacct's JSON output in the shape of normalise_nfdump_flow.
    pmacct names protocols ("tcp") and, as nfdump, puts ICMP type*256+code in dst_port.
    reverse_packets/reverse_octets: the custom primitives of those names, if aggregated."""
    protocol = raw.get("ip_proto")
    if not str(protocol).isdigit():
        protocol = _PMACCT_PROTOCOLS.get(protocol, protocol)
    reverse = "reverse_packets" in raw
    return {
        "protocol": int(protocol),
        "src_addr": raw.get("ip_src"),
        "dst_addr": raw.get("ip_dst"),
        "src_port": raw.get("port_src", 0),
        "dst_port": raw.get("port_dst", 0),
        "packets": raw.get("packets"),
        "octets": raw.get("bytes"),
        "reverse_packets": int(raw["reverse_packets"]) if reverse else None,
        "reverse_octets": int(raw["reverse_octets"]) if reverse else None,
        "first_ms": _epoch_ms(raw["timestamp_start"]) if "timestamp_start" in raw else None,
        "last_ms": _epoch_ms(raw["timestamp_end"]) if "timestamp_end" in raw else None,
        "exporter": raw.get("peer_ip_src"),
        "raw": raw,
    }


def netflow5_datagram(src, dst, sport, dport, packets=1, octets=40, protocol=17, sequence=0):
    """A one-record NetFlow v5 datagram, written here without flowprobe's encoder."""
    now = int(time.time())
    header = struct.pack("!HHIIIIBBH", 5, 1, 1000, now, 0, sequence, 0, 0, 0)
    record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", ipaddress.ip_address(src).packed,
                         ipaddress.ip_address(dst).packed, bytes(4), 0, 0, packets, octets,
                         1, 1, sport, dport, 0, 0, protocol, 0, 0, 0, 0, 0, 0)
    return header + record


class Nfacctd:
    """pmacct's nfacctd on a loopback UDP port, its print plugin writing JSON lines.

    with Nfacctd() as collector:
        export to ("127.0.0.1", collector.port)
        flows = collector.flows()      # every record sent so far, normalised
        assert collector.complaints() == []

    One nfacctd can serve many tests: each exports from an address of its own
    (127.0.0.N) and reads flows(exporter) and complaints(exporter).

    flows() first sends a sentinel record (NetFlow v5, from an exporter address of its
    own) and waits until a purge that wrote it has ended (print_markers): pmacct handles
    datagrams in order, so by then everything sent before is written.  start() waits
    for one too: pmacct drops what arrives before its plugin is up.  The print plugin purges
    every second, appending; a record split over purges adds up.  (The memory plugin
    and its pmacct client would be quicker, but the plugin drops output when the
    client's socket is full: "Failed during write: Resource temporarily unavailable".)
    primitives: the aggregation (PMACCT_PRIMITIVES keeps every record apart);
    custom_primitives: lines of an aggregate_primitives file (pmacct's way to read
    elements it does not know, e.g. RFC 5103 reverse counters), their names added
    to the aggregation; config: more "key: value" lines; plugins: other plugin lines
    instead of the memory plugin (e.g. pgsql; then flows() has nothing to read)."""

    def __init__(self, host="127.0.0.1", port=None, primitives=PMACCT_PRIMITIVES,
                 custom_primitives=(), config=(), plugins=None, start_timeout=15.0, netns=None):
        self.host = host
        self.netns = netns
        self.port = port or (free_udp_port(host) if netns is None else 2055)
        self.directory = Path(tempfile.mkdtemp(prefix="nfacctd-"))
        self.output = self.directory / "flows.json"
        self.primitives = tuple(primitives)
        self.custom_primitives = tuple(custom_primitives)
        self.config = tuple(config)
        self.plugins = plugins
        self.start_timeout = start_timeout
        self.process = None
        self.final_socket = None
        self._log = None
        self.sentinels = 0

    def config_text(self):
        lines = ["daemonize: false", f"nfacctd_ip: {self.host}", f"nfacctd_port: {self.port}",
                 "timestamps_since_epoch: true", "nfacctd_disable_checks: false"]
        primitives = list(self.primitives)
        if self.custom_primitives:
            path = self.directory / "primitives.lst"
            path.write_text("\n".join(self.custom_primitives) + "\n")
            lines.append(f"aggregate_primitives: {path}")
            primitives += [line.split("name=")[1].split()[0] for line in self.custom_primitives]
        if self.plugins is None:
            lines += ["plugins: print[flows]", f"aggregate[flows]: {', '.join(primitives)}",
                      "print_output[flows]: json", f"print_output_file[flows]: {self.output}",
                      "print_output_file_append[flows]: true", "print_markers[flows]: true",
                      "print_refresh_time[flows]: 1"]
        else:
            lines += list(self.plugins)
        return "\n".join(lines + list(self.config)) + "\n"

    def start(self):
        config = self.directory / "nfacctd.conf"
        config.write_text(self.config_text())
        self._log = tempfile.TemporaryFile()
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.process = subprocess.Popen([*prefix, NFACCTD, "-f", str(config)], stdout=self._log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ToolError(f"nfacctd exited with {self.process.returncode} before binding "
                                f"{self.host}:{self.port}:\n{self.log()}")
            if self.socket_state() is not None:
                if self.plugins is None:
                    self._await_plugin(deadline)
                return self
            time.sleep(0.02)
        self.stop()
        raise ToolError(f"nfacctd did not bind {self.host}:{self.port}:\n{self.log()}")

    def socket_state(self):
        """rx_queue and drops of nfacctd's socket (None when it is not running)."""
        return own_udp_socket(self.process, self.port)

    def send_sentinel(self):
        """A record of its own (its source port counts sentinels) from 127.0.0.2; inside
        the collector's namespace when it has one."""
        number = self.sentinels
        self.sentinels += 1
        datagram = netflow5_datagram(*SENTINEL_ADDRESSES, number, 9, sequence=number)
        ipv4 = _family(self.host) == socket.AF_INET
        target = "127.0.0.1" if self.host == "0.0.0.0" else self.host
        if self.netns is None:
            with socket.socket(_family(self.host), socket.SOCK_DGRAM) as sock:
                if ipv4:
                    sock.bind((SENTINEL_EXPORTER, 0))
                sock.sendto(datagram, (target, self.port))
            return number
        sender = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                  f"s.bind(('{SENTINEL_EXPORTER}', 0)); "
                  f"s.sendto(bytes.fromhex(sys.argv[1]), ('{target}', {self.port}))")
        subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", sender,
                        datagram.hex()], check=True, capture_output=True, timeout=30)
        return number

    @staticmethod
    def is_sentinel(raw):
        return (raw.get("ip_src"), raw.get("ip_dst")) == SENTINEL_ADDRESSES

    def _written(self):
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines()
                if line.strip()]

    def writers_idle(self):
        """Every purge pmacct started has ended: its writers are forked processes and
        may overlap, so a later purge (the sentinel's) can end before an earlier one."""
        log = self.log()
        return log.count("Purging cache - START") == log.count("Purging cache - END")

    def _await_plugin(self, deadline):
        """Sentinels until one is written: the plugin is up (each costs a purge, a second)."""
        while time.monotonic() < deadline:
            number = self.send_sentinel()
            resend = time.monotonic() + 1.5
            while time.monotonic() < resend:
                if any(self.is_sentinel(e) and e.get("port_src") == number
                       for e in self._written()):
                    return
                time.sleep(0.05)
        raise ToolError(f"nfacctd's print plugin wrote nothing:\n{self.log()}")

    def raw_flows(self, timeout=15.0):
        """Every entry written, once a purge that wrote the sentinel has ended (the
        sentinel and the purge markers left out)."""
        number = self.send_sentinel()
        deadline = time.monotonic() + timeout
        while True:
            entries = self._written()
            sentinel = next((n for n, e in enumerate(entries)
                             if self.is_sentinel(e) and e.get("port_src") == number), None)
            if sentinel is not None and self.writers_idle() and any(
                    e.get("event_type") == "purge_close" for e in entries[sentinel:]):
                self.final_socket = self.socket_state()
                return [e for e in entries
                        if e.get("event_type") == "purge" and not self.is_sentinel(e)]
            if time.monotonic() > deadline:
                raise ToolError(f"pmacct did not write the sentinel within {timeout}s:\n"
                                f"{self.log()}")
            time.sleep(0.05)

    def flows(self, exporter=None):
        """Every record written (see raw_flows), normalised; only exporter's when given."""
        return [normalise_pmacct_flow(raw) for raw in self.raw_flows()
                if exporter is None or raw.get("peer_ip_src") == exporter]

    def stop(self, timeout=20.0):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired as expired:
            self.process.kill()
            self.process.wait()
            raise ToolError(f"nfacctd ignored SIGINT for {timeout}s:\n{self.log()}") from expired

    def close(self):
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()   # no nfacctd outlives a start that failed
            raise

    def __exit__(self, *exc):
        self.close()

    def log(self):
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def complaints(self, exporter=None):
        """What pmacct found wrong in the datagrams: WARN/ERROR lines, malformed templates,
        sequence gaps ("expecting flow ... but received ..."); about exporter's datagrams
        only when given (lines naming no exporter count for every one)."""
        return [line for line in self.log().splitlines()
                if (line.startswith(("WARN", "ERROR", "CRIT", "ALERT"))
                    or "malformed" in line or "expecting flow" in line)
                and f"agent={SENTINEL_EXPORTER}:" not in line
                and (exporter is None or "agent=" not in line or f"agent={exporter}:" in line)]
