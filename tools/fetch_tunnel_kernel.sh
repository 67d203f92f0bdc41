#!/bin/sh
# A distribution kernel for the tunnel VM (tests/tunnel_vm.py): the tunnel
# types a minimal host kernel lacks (GRE, Geneve, IPIP, sit, ip6gre, ip6tnl,
# L2TP) are made inside it.  Downloads Debian's linux-image package with apt
# and unpacks it (nothing is installed); prints the variable the tests read.
#   tools/fetch_tunnel_kernel.sh [DIR]     (default: build/tunnel-kernel)
set -eu

cd "$(dirname "$0")/.."
target=${1:-build/tunnel-kernel}
image=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[^ ]*\)/\1/p' | head -n 1)
[ -n "$image" ] || {
	echo "fetch_tunnel_kernel: apt knows no linux-image-amd64" >&2
	exit 1
}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && apt-get download "$image" >/dev/null)
rm -rf "$target"
mkdir -p "$target"
dpkg-deb -x "$scratch"/"$image"_*.deb "$target"
echo "FLOWPROBE_TUNNEL_KERNEL=$(cd "$target" && pwd)"
