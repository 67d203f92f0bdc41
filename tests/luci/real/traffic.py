"""Paced traffic for the real-LuCI test (run inside a namespace with
`ip netns exec`): a known byte rate for the throughput chart, ICMP of two
types for the busiest flows.

    traffic.py send HOST PORT RATE_PPS PAYLOAD_BYTES [CLOSED_PORT]
        RATE_PPS datagrams a second, each PAYLOAD_BYTES long, to HOST:PORT,
        paced against the clock (not sleeps, which drift); every 3 s one
        datagram to CLOSED_PORT as well, which the host answers with an
        ICMP port unreachable
    traffic.py sink PORT
        receives and drops datagrams on PORT
"""

import socket
import sys
import time


def send(host, port, rate, payload, closed_port=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data = b"\x5a" * payload
    interval, start, sent = 1.0 / rate, time.monotonic(), 0
    next_probe = start
    while True:
        now = time.monotonic()
        due = int((now - start) / interval) + 1
        while sent < due:
            sock.sendto(data, (host, port))
            sent += 1
        if closed_port and now >= next_probe:
            sock.sendto(b"probe", (host, closed_port))
            next_probe = now + 3
        time.sleep(max(0.0, start + sent * interval - time.monotonic()))


def sink(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        sock.recv(65536)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]),
             int(sys.argv[6]) if len(sys.argv) > 6 else None)
    else:
        sink(int(sys.argv[2]))
