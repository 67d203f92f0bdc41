#!/bin/sh
# PID 1 of the test guest (kernel argument init=/usr/local/sbin/flowprobe-test-init):
# no systemd, so the VM is ready in seconds under TCG. It mounts what a system
# has, loads the NIC and 9p drivers, sets the addresses given on the kernel
# command line (fp_ip4, fp_ip6: they reach init as environment variables), then
# gives the serial console a shell for the test to drive. When that shell
# exits, it stops every process, syncs, remounts / read-only and powers off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mkdir -p /run/lock
for module in virtio_net 9pnet_virtio 9p; do modprobe -q "$module"; done
mkdir -p /mnt/host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro host0 /mnt/host 2>/dev/null ||
	echo "FP-INIT: no 9p share"

hostname flowprobe-guest
ip link set lo up
ip link set eth0 up
ip addr add "${fp_ip4:-10.77.0.2/24}" dev eth0
ip -6 addr add "${fp_ip6:-fd77::2/64}" dev eth0 nodad
# no router solicitations or SLAAC: the link carries only the test's traffic
sysctl -qw net.ipv6.conf.eth0.accept_ra=0 net.ipv6.conf.eth0.router_solicitations=0

echo "FP-INIT-READY kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
PS1='guest# ' /bin/sh -i </dev/console >/dev/console 2>&1
echo "FP-INIT: shell exited, powering off"

# a clean end: processes stopped, filesystem consistent, then the power
kill -TERM -1 2>/dev/null
sleep 1
kill -KILL -1 2>/dev/null
sync
mount -o remount,ro / && echo "FP-INIT: root remounted read-only"
echo "FP-INIT-POWEROFF"
echo o >/proc/sysrq-trigger
sleep 10
