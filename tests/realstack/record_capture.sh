#!/usr/bin/env bash
# Record a pcap of real Linux stacks talking to each other, for the
# real-stacks test (tests/test_real_stacks.py).
#
# Usage: record_capture.sh OUT.pcap
#
# Two private network namespaces joined by a veth pair exchange HTTP over
# TCP, pings that fragment at MTU 1500, UDP datagrams (one larger than the
# MTU) and TCP resets, over IPv4 and IPv6. tcpdump records namespace A's
# side of the veth. Nothing leaves the namespaces; they are deleted on exit,
# also on failure.
set -eu

usage() {
	echo "usage: $0 OUT.pcap" >&2
	exit 2
}

die() {
	echo "record_capture.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || usage
out=$1

[ "$(id -u)" -eq 0 ] || die "must run as root (creates network namespaces)"
ip netns list >/dev/null 2>&1 || die "'ip netns' is unavailable (iproute2 with netns support needed)"
for tool in tcpdump curl ping python3; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found in PATH"
done

ns_a=fp-a-$$
ns_b=fp-b-$$
v4_a=10.231.0.1
v4_b=10.231.0.2
v6_a=fd00:f10e::1
v6_b=fd00:f10e::2
http_port=8080
udp_port=9999
closed_port=9 # nothing listens there: the stack answers SYN with RST

work=$(mktemp -d)
pids=""

cleanup() {
	status=$?
	for pid in $pids; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $pids; do
		wait "$pid" 2>/dev/null || true
	done
	ip netns del "$ns_a" 2>/dev/null || true
	ip netns del "$ns_b" 2>/dev/null || true
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_a() { ip netns exec "$ns_a" "$@"; }
in_b() { ip netns exec "$ns_b" "$@"; }

ip netns add "$ns_a"
ip netns add "$ns_b"
# Created directly inside the namespaces, so the names cannot clash with
# interfaces of the host or of a concurrent run.
ip link add veth-a netns "$ns_a" type veth peer name veth-b netns "$ns_b"
for ns in "$ns_a" "$ns_b"; do
	ip -n "$ns" link set lo up
done
ip -n "$ns_a" link set veth-a mtu 1500 up
ip -n "$ns_b" link set veth-b mtu 1500 up
ip -n "$ns_a" addr add "$v4_a/24" dev veth-a
ip -n "$ns_b" addr add "$v4_b/24" dev veth-b
# nodad: the address is usable at once instead of after duplicate detection.
ip -n "$ns_a" addr add "$v6_a/64" dev veth-a nodad
ip -n "$ns_b" addr add "$v6_b/64" dev veth-b nodad

# Servers in B, started before the capture so that only the exchanges
# below are recorded. Background jobs call "ip netns exec" directly: it
# execs its command, so $! is the server itself and cleanup can kill it.
mkdir "$work/www"
head -c 300000 /dev/urandom >"$work/www/blob.bin"
ip netns exec "$ns_b" python3 -m http.server --bind :: --directory "$work/www" "$http_port" \
	>"$work/http.log" 2>&1 &
pids="$pids $!"

cat >"$work/udp_echo.py" <<'EOF'
import socket
import sys

# One dual-stack socket answers IPv4 (as mapped addresses) and IPv6.
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
sock.bind(("::", int(sys.argv[1])))
while True:
    data, peer = sock.recvfrom(65535)
    sock.sendto(data, peer)
EOF
ip netns exec "$ns_b" python3 "$work/udp_echo.py" "$udp_port" >"$work/udp.log" 2>&1 &
pids="$pids $!"

wait_listening() {
	# $1: ss option (-t or -u), $2: port
	for _ in $(seq 100); do
		if in_b ss -Hln "$1" "sport = :$2" | grep -q .; then
			return 0
		fi
		sleep 0.05
	done
	die "server on port $2 did not start"
}
wait_listening -t "$http_port"
wait_listening -u "$udp_port"

# -Z root: write the file as root wherever OUT is; -U: flush every packet.
ip netns exec "$ns_a" tcpdump -i veth-a -n -U -Z root -w "$out" >"$work/tcpdump.log" 2>&1 &
tcpdump_pid=$!
pids="$pids $tcpdump_pid"
for _ in $(seq 100); do
	grep -q "listening on" "$work/tcpdump.log" && break
	kill -0 "$tcpdump_pid" 2>/dev/null || die "tcpdump failed: $(cat "$work/tcpdump.log")"
	sleep 0.05
done
grep -q "listening on" "$work/tcpdump.log" || die "tcpdump did not start"

# HTTP over TCP: a few hundred KB and a 404, both families.
for url in "http://$v4_b:$http_port" "http://[$v6_b]:$http_port"; do
	in_a curl -gsS -o /dev/null "$url/blob.bin"
	in_a curl -gsS -o /dev/null "$url/missing"
done

# ICMP echo: small, then 3000 bytes of payload, which fragments at MTU 1500.
in_a ping -q -c 3 -i 0.2 "$v4_b" >/dev/null
in_a ping -q -c 3 -i 0.2 -s 3000 "$v4_b" >/dev/null
in_a ping -6 -q -c 3 -i 0.2 "$v6_b" >/dev/null
in_a ping -6 -q -c 3 -i 0.2 -s 3000 "$v6_b" >/dev/null

# UDP: several datagrams each way, one larger than the MTU.
cat >"$work/udp_client.py" <<'EOF'
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as sock:
    sock.settimeout(2)
    for size in (1, 100, 1000, 4000, 20):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        sock.sendto(payload, (host, port))
        echo, _ = sock.recvfrom(65535)
        if echo != payload:
            sys.exit("udp echo mismatch for %d bytes" % size)
EOF
in_a python3 "$work/udp_client.py" "$v4_b" "$udp_port"
in_a python3 "$work/udp_client.py" "$v6_b" "$udp_port"

# TCP resets: a SYN to a closed port (answered by RST) and a client that
# aborts an established connection (SO_LINGER 0 makes close() send RST).
for host in "$v4_b" "[$v6_b]"; do
	if in_a curl -gsS -o /dev/null --max-time 2 "http://$host:$closed_port/" 2>/dev/null; then
		die "port $closed_port unexpectedly open in $ns_b"
	fi
done
cat >"$work/abort_client.py" <<'EOF'
import socket
import struct
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.connect((host, port))
sock.sendall(b"GET /blob.bin HTTP/1.0\r\n")
sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
sock.close()
EOF
in_a python3 "$work/abort_client.py" "$v4_b" "$http_port"
in_a python3 "$work/abort_client.py" "$v6_b" "$http_port"

# Let the last answers arrive and tcpdump write them (-U), then stop it.
# tcpdump drops what it has not read yet when it exits, and on a loaded
# machine it lags: wait until the file stops growing (at most 10 s).
# SIGTERM, not SIGINT: a non-interactive shell starts background commands
# with SIGINT ignored. tcpdump exits cleanly on either.
last_size=-1
quiet=0
for _ in $(seq 40); do
	sleep 0.25
	size=$(stat -c %s "$out")
	if [ "$size" = "$last_size" ]; then
		quiet=$((quiet + 1))
		[ "$quiet" -ge 4 ] && break # a second with nothing new
	else
		quiet=0
	fi
	last_size=$size
done
kill -TERM "$tcpdump_pid"
wait "$tcpdump_pid" || die "tcpdump exited with an error: $(cat "$work/tcpdump.log")"
pids=${pids% "$tcpdump_pid"}
grep -E "packets (captured|dropped by kernel)" "$work/tcpdump.log" >&2 || true
echo "record_capture.sh: wrote $out" >&2
