#!/bin/sh
# Host packages for the QEMU system test; installs only what is missing, so a
# second run costs one dpkg query. The lock timeout waits for other apt users.
# Usage: install-deps.sh [openwrt]   (openwrt: also the MIPS/ARM system emulators)
set -eu

packages="qemu-system-x86 qemu-utils mmdebstrap debian-archive-keyring e2fsprogs iproute2 tcpdump iputils-ping curl nfdump"
if [ "${1:-}" = openwrt ]; then
	packages="$packages qemu-system-mips qemu-system-arm python3 gzip"
fi

missing=""
for package in $packages; do
	status=$(dpkg-query -W -f '${db:Status-Abbrev}' "$package" 2>/dev/null || true)
	case "$status" in
	ii*) ;;
	*) missing="$missing $package" ;;
	esac
done
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "qemu: installing$missing"
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
	--no-install-recommends $missing
