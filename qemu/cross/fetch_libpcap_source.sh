#!/bin/sh
# Unpacks Debian's libpcap source package (the version this Debian ships,
# with Debian's patches) into DIR/libpcap, once.  The package comes from
# the mirror the machine's own apt sources name, through a private apt
# configuration (no deb-src line added to the system), and apt checks it
# against the archive's signed index.
#   fetch_libpcap_source.sh DIR
set -eu

mkdir -p "$1"
dir=$(cd "$1" && pwd) # apt takes relative paths from /etc/apt
[ -f "$dir/libpcap/.unpacked" ] && exit 0

codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
# the first mirror serving the release itself (not -security or -updates):
# deb822 .sources files first, then one-line sources.list files
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$codename" '
	function stanza_end() { if (uri && found && !done) { print uri; done = 1; exit } uri = ""; found = 0 }
	/^[ \t]*$/ { stanza_end() }
	/^URIs:/ { uri = $2 }
	/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = 1 }
	END { stanza_end() }')
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="$codename" '
		$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:/ && $(i + 1) == suite) { print $i; exit } }')
fi
if [ -z "$mirror" ]; then
	echo "fetch_libpcap_source: no Debian mirror for '$codename' in /etc/apt/sources.list*" >&2
	exit 1
fi

apt_dir=$dir/apt
rm -rf "$apt_dir" "$dir/libpcap"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/download"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename main" \
	>"$apt_dir/sources.list"
sandbox=""
[ "$(id -u)" -eq 0 ] && sandbox="-o APT::Sandbox::User=root" # root-owned dirs: no _apt
set -- $sandbox -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts="$apt_dir/sources.list.d" \
	-o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -q
apt-get "$@" update >/dev/null
(cd "$apt_dir/download" && apt-get "$@" source --download-only libpcap >/dev/null)
# apt verified the files against the signed index: unpack with Debian's patches
dsc=$(ls "$apt_dir"/download/libpcap_*.dsc)
dpkg-source --no-check -x "$dsc" "$dir/libpcap" >/dev/null
basename "$dsc" >"$dir/libpcap/.unpacked"
echo "fetch_libpcap_source: $(cat "$dir/libpcap/.unpacked") from $mirror"
