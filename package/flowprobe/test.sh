#!/bin/sh
# Run by the packages feed CI after installing the package on the target
# architecture: sh test.sh PKG_NAME PKG_VERSION. There is no procd or ubusd
# there; the service itself is tested in QEMU.

[ "$1" = flowprobe ] || exit 0

set -e

# the console entry point is where the init script calls it
version=$(/usr/sbin/flowprobe --version)
[ "$version" = "flowprobe $2" ] || {
	echo "flowprobe --version printed '$version', expected 'flowprobe $2'"
	exit 1
}

# the system user the daemon drops to
id flowprobe

[ -x /etc/init.d/flowprobe ] || {
	echo "/etc/init.d/flowprobe is missing or not executable"
	exit 1
}

# the cross-built C core meters a capture written here: 3 UDP packets of
# one flow, in either byte order of the target
python3 - << 'EOF'
import json
import struct
import subprocess

from flowprobe import config

pcap = "/tmp/flowprobe-test.pcap"
with open(pcap, "wb") as out:
    out.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for n in range(3):
        udp = struct.pack("!HHHH", 40000, 4739, 8 + 4, 0) + b"test"
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0,
                         bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
        out.write(struct.pack("=IIII", 1700000000 + n, 0, len(frame), len(frame)) + frame)

result = subprocess.run(["/usr/sbin/flowprobe", "read", "--json", pcap],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
flows = [json.loads(line) for line in result.stdout.splitlines()]
assert len(flows) == 1, flows
flow = flows[0]
assert (flow["src_addr"], flow["dst_addr"]) == ("192.0.2.1", "192.0.2.2"), flow
assert (flow["src_port"], flow["dst_port"], flow["protocol"]) == (40000, 4739, 17), flow
assert (flow["packets"], flow["octets"]) == (3, 3 * 32), flow
counters = json.loads(result.stderr.splitlines()[-1])["counters"]
assert counters["packets_read"] == 3, counters

# the shipped config is valid (read as the daemon reads it)
settings = config.load("/etc/config/flowprobe")
assert settings is not None
EOF

# the ubusd ACL for the daemon's user parses
jsonfilter -i /usr/share/acl.d/flowprobe.json -e '@.user'
