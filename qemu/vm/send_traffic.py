"""Real traffic from the host's side of the link to a guest, paced for a guest under TCG.

Run inside the link's network namespace. Standard library only (the host's python3).

    send_traffic.py --to4 10.77.0.2 --to6 fd77::2 --udp-port 5000 [--http-port 8080]
                    [--banner-port 22] [--rate 400] [--datagrams 600]

- UDP: --datagrams per address family from 4 source ports, --rate per second in all, sizes
  cycling up to 6000 bytes so that the host fragments them (IPv4 and IPv6 fragments);
- TCP: an HTTP GET of /big per family (--http-port), or a connection that reads the server's
  banner line and closes (--banner-port, e.g. SSH on OpenWrt).
Prints one JSON line: what was sent.
"""

import argparse
import http.client
import json
import socket
import time

SIZES = (40, 300, 1200, 1472, 3000, 6000)  # 3000 and 6000: fragmented on a 1500-byte link
SOURCE_PORTS = 4


def send_udp(targets, port, datagrams, rate):
    sockets = []
    for family, address in targets:
        for _ in range(SOURCE_PORTS):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
            sockets.append((sock, address))
    sent, interval, start = 0, 1.0 / rate, time.monotonic()
    for n in range(datagrams * len(targets)):
        sock, address = sockets[n % len(sockets)]
        sock.sendto(bytes([n & 0xFF]) * SIZES[n % len(SIZES)], (address, port))
        sent += 1
        delay = start + (n + 1) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for sock, _ in sockets:
        sock.close()
    return sent


def http_get(address, port):
    connection = http.client.HTTPConnection(address, port, timeout=60)
    connection.request("GET", "/big")
    body = connection.getresponse().read()
    connection.close()
    return len(body)


def read_banner(address, port):
    with socket.create_connection((address, port), timeout=60) as sock:
        banner = b""
        while b"\n" not in banner:
            chunk = sock.recv(256)
            if not chunk:
                break
            banner += chunk
    return banner.decode(errors="replace").strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to4", required=True)
    parser.add_argument("--to6", required=True)
    parser.add_argument("--udp-port", type=int, default=5000)
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--banner-port", type=int)
    parser.add_argument("--rate", type=float, default=400.0, help="UDP datagrams per second")
    parser.add_argument("--datagrams", type=int, default=600, help="UDP datagrams per family")
    args = parser.parse_args()
    targets = [(socket.AF_INET, args.to4), (socket.AF_INET6, args.to6)]
    report = {"udp_datagrams": send_udp(targets, args.udp_port, args.datagrams, args.rate)}
    for _, address in targets:
        if args.http_port:
            report[f"http_bytes_{address}"] = http_get(address, args.http_port)
        if args.banner_port:
            report[f"banner_{address}"] = read_banner(address, args.banner_port)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
