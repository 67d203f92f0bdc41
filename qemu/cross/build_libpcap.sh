#!/bin/sh
# Cross-builds libpcap (static, no D-Bus, USB, RDMA or netlink: a savefile
# reader needs none of them, and Debian's own libpcap.a cannot be linked
# statically because of D-Bus) for one target, once per source, compiler
# and flags.
#   build_libpcap.sh SOURCE_DIR CC HOST OUT_DIR
set -eu

source_dir=$(cd "$1" && pwd)
cc=$2
host=$3
mkdir -p "$4"
out=$(cd "$4" && pwd) # configure wants an absolute prefix
flags="--with-pcap=linux --disable-shared --disable-usb --disable-netmap --disable-bluetooth
--disable-dbus --disable-rdma --without-libnl --without-dpdk"
key="$(cat "$source_dir/.unpacked") $($cc --version | head -1) $flags"

[ -f "$out/.key" ] && [ "$(cat "$out/.key")" = "$key" ] && exit 0
rm -rf "$out"
mkdir -p "$out/build"
(
	cd "$out/build"
	# shellcheck disable=SC2086 # the flags are words
	CC=$cc CFLAGS="-O2" "$source_dir/configure" --host="$host" --prefix="$out" $flags >configure.log 2>&1 ||
		{ tail -20 configure.log >&2 && exit 1; }
	# the archive only: Debian's shared-library patch expects an in-tree build
	make -j"$(nproc)" libpcap.a >make.log 2>&1 || { tail -20 make.log >&2 && exit 1; }
	mkdir -p "$out/lib" "$out/include/pcap"
	cp libpcap.a "$out/lib/"
	cp "$source_dir"/pcap/*.h "$out/include/pcap/"
	cp "$source_dir"/pcap.h "$out/include/"
)
rm -rf "$out/build"
echo "$key" >"$out/.key"
