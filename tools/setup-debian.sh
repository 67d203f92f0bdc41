#!/bin/sh
# Installs what flowprobe needs on Debian/Ubuntu and builds it into .venv.
# Idempotent: packages already present are not touched.
set -eu

cd "$(dirname "$0")/.."

PACKAGES="build-essential python3-dev python3-venv libpcap-dev clang
tcpdump tshark iproute2 iputils-ping curl softflowd nfdump shfmt tcpreplay"
# the conntrack source's tests: masquerade on a namespace router
PACKAGES="$PACKAGES nftables"
# the enrichment stage's device names: a real dnsmasq leasing to busybox's udhcpc
PACKAGES="$PACKAGES dnsmasq-base busybox"
# the collector tests: pmacct's nfacctd beside nfdump and tshark; sFlow's sfacctd and
# pmacctd's sfprobe (the bench's peer)
PACKAGES="$PACKAGES pmacct"
# layer-2 flows' lab: real ARP; checksum offload switched on a veth
PACKAGES="$PACKAGES iputils-arping ethtool"
# libFuzzer's runtime; Ubuntu 22.04 names it by clang version only
apt-cache show libclang-rt-dev >/dev/null 2>&1 && PACKAGES="$PACKAGES libclang-rt-dev"
# the LuCI app's tests: xgettext, headless Chromium, node + npm (Debian's, unless
# another node is already installed: its npm comes with it)
PACKAGES="$PACKAGES gettext chromium"
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs"
command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES npm"

missing=""
for package in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $package"
done
if [ -n "$missing" ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "setup: installing$missing"
	$sudo apt-get update -q
	# tshark asks about non-root capture through debconf otherwise
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip setuptools wheel cffi
.venv/bin/pip install -q -e '.[test]'
# playwright-core (pinned in tests/luci/package-lock.json) drives Debian's chromium
if command -v npm >/dev/null 2>&1 &&
	[ ! tests/luci/node_modules/.package-lock.json -nt tests/luci/package-lock.json ]; then
	(cd tests/luci && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done (.venv/bin/flowprobe)"
