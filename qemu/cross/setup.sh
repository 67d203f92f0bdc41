#!/bin/sh
# Installs what the cross-architecture replays need on Debian 12: the
# cross compilers with their C libraries, qemu-user, and the tools that
# cross-build libpcap from Debian's source package.  Idempotent: packages
# already present are not touched.
set -eu

PACKAGES="qemu-user-static make gcc libc6-dev libpcap-dev dpkg-dev flex bison
gcc-mips-linux-gnu libc6-dev-mips-cross
gcc-mipsel-linux-gnu libc6-dev-mipsel-cross
gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
gcc-aarch64-linux-gnu libc6-dev-arm64-cross
debian-archive-keyring"

missing=""
for package in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $package"
done
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "cross setup: installing$missing"
$sudo apt-get -o DPkg::Lock::Timeout=600 update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
	--no-install-recommends $missing
