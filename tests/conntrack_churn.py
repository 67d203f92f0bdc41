"""A churn of short connections through the masquerading router of
tests/netlab.py, with the client's own list of connections as truth, and
what the daemon exported read back from an IPFIX-over-TCP recorder (TCP: the
collector cannot drop a record, so whatever is missing, the probe lost).

Used by tests/test_conntrack_reload.py and bench/conntrack_bench.py.
"""

import json
import struct
import subprocess
import sys
import time

TCP_PORT, UDP_PORT, RECORDER_PORT = 9100, 9101, 4739
TCP_REPLY, UDP_PAYLOAD = 1000, 64
NAT_RULES = """
table inet fp_churn {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "r-srv" masquerade
  }
}
"""

# Replies with TCP_REPLY bytes and closes: the server ends every TCP connection.
SERVER = f"""
import socket, threading
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
u.bind(('0.0.0.0', {UDP_PORT}))
threading.Thread(target=lambda: [u.recv(65535) for _ in iter(int, 1)], daemon=True).start()
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('0.0.0.0', {TCP_PORT})); t.listen(4096)
reply = b'y' * {TCP_REPLY}
while True:
    c, _ = t.accept()
    try:
        c.sendall(reply)
    except OSError:
        pass
    c.close()
"""

# One worker: TCP and UDP connections from its own range of source ports (a
# port is used once per protocol, so a connection's key is its source port).
# Prints the ports of the connections that completed, as JSON.
CLIENT = f"""
import json, socket, sys
server, first, count, kinds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
done = {{"tcp": [], "udp": []}}
payload = b'u' * {UDP_PAYLOAD}
for port in range(first, first + count):
    if "t" in kinds:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind(('0.0.0.0', port))
            t.connect((server, {TCP_PORT}))
            got = 0
            while True:
                data = t.recv(4096)
                if not data:
                    break
                got += len(data)
            if got == {TCP_REPLY}:
                done["tcp"].append(port)
        except OSError:
            pass
        t.close()
    if "u" in kinds:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(('0.0.0.0', port))
            u.sendto(payload, (server, {UDP_PORT}))
            done["udp"].append(port)
        except OSError:
            pass
        u.close()
print(json.dumps(done))
"""

# Writes every byte the exporter sends (IPFIX over TCP) into a file.
RECORDER = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {RECORDER_PORT})); s.listen(4)
with open(sys.argv[1], 'ab', buffering=0) as out:
    while True:
        c, _ = s.accept()
        while True:
            data = c.recv(1 << 20)
            if not data:
                break
            out.write(data)
        c.close()
"""


def prepare(lab, tcp_time_wait=1, udp_timeout=2):
    """Masquerade on the router, short timeouts (DESTROYs within seconds),
    the server running. Returns None, or why the lab cannot do it."""
    loaded = subprocess.run(["ip", "netns", "exec", lab.router, "nft", "-f", "-"],
                            input=NAT_RULES, capture_output=True, text=True)
    if loaded.returncode != 0:
        return f"nftables masquerade unavailable: {loaded.stderr.strip()}"
    lab.run(lab.router, "sysctl", "-qw",
            f"net.netfilter.nf_conntrack_udp_timeout={udp_timeout}",
            f"net.netfilter.nf_conntrack_udp_timeout_stream={udp_timeout}",
            f"net.netfilter.nf_conntrack_tcp_timeout_time_wait={tcp_time_wait}",
            "net.netfilter.nf_conntrack_tcp_timeout_close_wait=1",
            "net.netfilter.nf_conntrack_tcp_timeout_last_ack=1",
            "net.netfilter.nf_conntrack_max=262144")
    lab.run(lab.client, "sysctl", "-qw", "net.ipv4.ip_local_port_range=60000 60999")
    lab.popen(lab.server, sys.executable, "-c", SERVER)
    time.sleep(0.3)
    return None


def start_recorder(lab, path):
    process = lab.popen(lab.router, sys.executable, "-c", RECORDER, str(path))
    time.sleep(0.3)
    return process


class Churn:
    """`per_worker` connections per protocol from each worker, all at once."""

    def __init__(self, lab, workers=2, per_worker=12500, first_port=10000, kinds="tu"):
        self.processes = []
        for n in range(workers):
            self.processes.append(lab.popen(
                lab.client, sys.executable, "-c", CLIENT, lab.server4,
                str(first_port + n * per_worker), str(per_worker), kinds,
                stdout=subprocess.PIPE, text=True))
        self.started = time.monotonic()

    def wait(self, timeout=300):
        """{(protocol number, source port)} of every connection completed."""
        done = set()
        for process in self.processes:
            out, _ = process.communicate(timeout=timeout)
            ports = json.loads(out)
            done |= {(6, p) for p in ports["tcp"]} | {(17, p) for p in ports["udp"]}
        self.seconds = time.monotonic() - self.started
        return done


# ---- IPFIX over TCP, read back ----

REVERSE_PEN = 29305
NAMES = {(0, 1): "octets", (0, 2): "packets", (0, 4): "protocol", (0, 7): "src_port",
         (0, 8): "src_addr", (0, 11): "dst_port", (0, 12): "dst_addr", (0, 136): "end_reason",
         (0, 152): "start_ms", (0, 153): "end_ms",
         (REVERSE_PEN, 1): "reverse_octets", (REVERSE_PEN, 2): "reverse_packets"}


def ipfix_records(data):
    """Every data record of an IPFIX stream as a dict of the fields above."""
    templates, records, offset = {}, [], 0
    while offset + 16 <= len(data):
        version, length = struct.unpack_from("!HH", data, offset)
        if version != 10 or length < 16:
            raise ValueError(f"not IPFIX at {offset}")
        end, position = offset + length, offset + 16
        while position + 4 <= end:
            set_id, set_length = struct.unpack_from("!HH", data, position)
            body, set_end = position + 4, position + set_length
            if set_id == 2:
                while body + 4 <= set_end:
                    template_id, count = struct.unpack_from("!HH", data, body)
                    body += 4
                    fields = []
                    for _ in range(count):
                        element, size = struct.unpack_from("!HH", data, body)
                        body += 4
                        enterprise = 0
                        if element & 0x8000:
                            enterprise = struct.unpack_from("!I", data, body)[0]
                            body += 4
                        fields.append((enterprise, element & 0x7FFF, size))
                    templates[template_id] = fields
            elif set_id >= 256 and set_id in templates:
                fields = templates[set_id]
                size = sum(f[2] for f in fields)
                while body + size <= set_end:
                    record = {}
                    for enterprise, element, width in fields:
                        name = NAMES.get((enterprise, element))
                        if name:
                            value = data[body:body + width]
                            record[name] = (".".join(map(str, value)) if name.endswith("addr")
                                            else int.from_bytes(value, "big"))
                        body += width
                    records.append(record)
            position = set_end
        offset = end
    return records


def by_connection(records, client_address):
    """(protocol, client source port) -> the records of that connection."""
    connections = {}
    for r in records:
        if r.get("src_addr") == client_address:
            connections.setdefault((r["protocol"], r["src_port"]), []).append(r)
    return connections


def compare(done, records, client_address):
    """What the probe exported against the client's list: missing, doubled,
    and connections whose counters are short (a record, but not all of it)."""
    exported = by_connection(records, client_address)
    missing = sorted(k for k in done if k not in exported)
    doubled = sorted(k for k in done if len(exported.get(k, ())) > 1)
    short = []
    for key in done:
        got = exported.get(key)
        if not got:
            continue
        packets = sum(r.get("packets", 0) for r in got)
        octets = sum(r.get("octets", 0) for r in got)
        reverse = sum(r.get("reverse_octets", 0) for r in got)
        if key[0] == 17 and (packets, octets) != (1, UDP_PAYLOAD + 28):
            short.append((key, packets, octets))
        elif key[0] == 6 and (packets < 3 or reverse < TCP_REPLY + 3 * 40):
            short.append((key, packets, reverse))
    return {"connections": len(done), "missing": missing, "doubled": doubled, "short": short}
