#!/bin/sh
# luci-app-flowprobe's pages on the real LuCI runtime, for one or more LuCI
# branches: builds OpenWrt's userland once (tools/openwrt-userland/build.sh),
# takes each branch's luci-base and luci-theme-bootstrap out of the luci
# checkout (git archive, the checkout is left as it is), and runs
# tests/test_luci_real.py against each (tests/luci/real/stack.py starts the
# stack in a private mount namespace; nothing on the host changes).
#
#   OPENWRT_SRC=/path/to/checkouts tests/luci/real/run.sh [BRANCH...] [-- PYTEST_ARGS]
#
# OPENWRT_SRC: see build.sh (libubox ubus uci ucode lucihttp rpcd uhttpd
# cgi-io iwinfo luci). BRANCH: a branch or commit of OPENWRT_SRC/luci (default:
# what is checked out). OPENWRT_USERLAND: the userland root (default
# /var/tmp/flowprobe-openwrt-userland, built when missing). Needs root.
set -eu

[ -n "${OPENWRT_SRC:-}" ] || {
	echo "usage: OPENWRT_SRC=dir $0 [BRANCH...] [-- PYTEST_ARGS]" >&2
	exit 2
}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
USERLAND=${OPENWRT_USERLAND:-/var/tmp/flowprobe-openwrt-userland}
TREES=${TMPDIR:-/tmp}/flowprobe-luci-trees

[ -x "$USERLAND/usr/bin/uhttpd" ] || PYTHON=$PYTHON "$ROOT/tools/openwrt-userland/build.sh" "$USERLAND"

luci=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	tree=$TREES/luci-$(echo "$1" | tr '/' '-')
	rm -rf "$tree"
	mkdir -p "$tree"
	git -C "$OPENWRT_SRC/luci" archive "$1" modules/luci-base themes/luci-theme-bootstrap |
		tar -x -C "$tree"
	luci=${luci:+$luci:}$tree
	shift
done
[ "${1:-}" != "--" ] || shift

cd "$ROOT"
OPENWRT_USERLAND=$USERLAND OPENWRT_LUCI=${luci:-$OPENWRT_SRC/luci} \
	"$PYTHON" -m pytest -v tests/test_luci_real.py "$@"
