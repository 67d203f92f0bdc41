#!/bin/sh
# Builds OpenWrt's userland from upstream checkouts, for tests that run the
# real thing (ubusd, uci, rpcd, uhttpd with its ucode handler, LuCI's ucode
# runtime) on a Debian host.
#
#   OPENWRT_SRC=/path/to/checkouts tools/openwrt-userland/build.sh PREFIX [component...]
#
# OPENWRT_SRC holds one clone per component, named after it: libubox, ubus,
# uci, ucode, lucihttp, rpcd, uhttpd, cgi-io; luci (for rpcd-mod-luci, luci-base's
# core.so and ucode-mod-html) and iwinfo (only its header, for
# rpcd-mod-luci). Debian packages needed: cmake, libjson-c-dev, libnl-3-dev.
# Without components, all of them, in dependency order:
#   libubox ubus uci ucode lucihttp rpcd rpcd-mod-luci uhttpd cgi-io ucode-mod-html luci-core
#   python (python-ubus and pyuci from their sdists, by pip: PREFIX/python)
#
# Everything is configured for /usr, as on OpenWrt, and installed under
# PREFIX (DESTDIR): PREFIX/usr/{bin,sbin,lib,include,share}. The programs
# look for their plugins and modules at the fixed OpenWrt paths
# (/usr/lib/rpcd, /usr/lib/ucode, /usr/share/ucode), so run them with PREFIX
# laid over / in a private mount namespace (tests/luci/real/run.py does);
# libraries are found in PREFIX/usr/lib through the rpath as well, so
# ubusd, ubus and uci also run straight from PREFIX. Build trees go to
# PREFIX/build. Nothing here belongs in the repository: keep PREFIX outside.
set -eu

usage() {
	echo "usage: OPENWRT_SRC=dir $0 PREFIX [component...]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
[ -n "${OPENWRT_SRC:-}" ] || usage
mkdir -p "$1"
PREFIX=$(cd "$1" && pwd)
shift
SRC=$(cd "$OPENWRT_SRC" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
JOBS=${JOBS:-$(nproc)}
ALL="libubox ubus uci ucode lucihttp rpcd rpcd-mod-luci uhttpd cgi-io ucode-mod-html luci-core python"
[ $# -gt 0 ] || set -- $ALL

STAGE=$PREFIX/usr
BUILD=$PREFIX/build
CFLAGS_COMMON="-O2 -g -I$STAGE/include"
# for users of ucode's headers (util.h calls vasprintf, a GNU extension);
# empty, as the sources that define it themselves do
GNU="-D_GNU_SOURCE="
# glibc before 2.38 has no strlcpy (rpcd uses it): a force-included shim
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc 2\.\([0-9]*\).*/\1/p')
if [ -n "$glibc" ] && [ "$glibc" -lt 38 ]; then
	CFLAGS_COMMON="$CFLAGS_COMMON -include $HERE/compat.h"
fi
LDFLAGS_COMMON="-L$STAGE/lib -Wl,-rpath,$STAGE/lib -Wl,-rpath-link,$STAGE/lib"

source_of() {
	case "$1" in
	rpcd-mod-luci) echo "$SRC/luci/libs/rpcd-mod-luci/src" ;;
	luci-core) echo "$SRC/luci/modules/luci-base/src" ;;
	*) echo "$SRC/$1" ;;
	esac
}

cmake_build() {
	name=$1
	shift
	src=$(source_of "$name")
	[ -f "$src/CMakeLists.txt" ] || {
		echo "build.sh: no $src/CMakeLists.txt (clone $name into $SRC)" >&2
		exit 1
	}
	rm -rf "${BUILD:?}/$name"
	mkdir -p "$BUILD/$name"
	(
		cd "$BUILD/$name"
		CFLAGS="$CFLAGS_COMMON ${EXTRA_CFLAGS:-}" LDFLAGS="$LDFLAGS_COMMON" cmake -S "$src" -B . \
			-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_PREFIX_PATH="$STAGE" \
			-DCMAKE_FIND_ROOT_PATH="$STAGE" -DCMAKE_BUILD_TYPE=None \
			-DCMAKE_INSTALL_LIBDIR=lib "$@" >cmake.log 2>&1 || {
			cat cmake.log >&2
			exit 1
		}
		make -j"$JOBS" >make.log 2>&1 || {
			tail -40 make.log >&2
			exit 1
		}
		make DESTDIR="$PREFIX" install >install.log 2>&1
	)
}

build_one() {
	echo "build.sh: $1" >&2
	case "$1" in
	libubox) cmake_build libubox -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF -DUNIT_TESTING=OFF ;;
	ubus) cmake_build ubus -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF ;;
	uci) cmake_build uci -DBUILD_LUA=OFF -DBUILD_TESTS=OFF ;;
	ucode)
		cmake_build ucode -DUBUS_SUPPORT=ON -DUCI_SUPPORT=ON -DULOOP_SUPPORT=ON \
			-DRTNL_SUPPORT=OFF -DNL80211_SUPPORT=OFF -DDEBUG_SUPPORT=OFF \
			-DZLIB_SUPPORT=OFF -DDIGEST_SUPPORT=OFF -DSOCKET_SUPPORT=ON
		;;
	lucihttp) EXTRA_CFLAGS=$GNU cmake_build lucihttp -DBUILD_LUA=OFF -DBUILD_UCODE=ON -DBUILD_TESTS=OFF ;;
	rpcd)
		EXTRA_CFLAGS=$GNU cmake_build rpcd -DIWINFO_SUPPORT=OFF -DUCODE_SUPPORT=ON \
			-DFILE_SUPPORT=ON -DRPCSYS_SUPPORT=ON
		# the plugin API, as OpenWrt's package stages it (for rpcd-mod-luci),
		# and the ACL it installs: an anonymous session may log in
		mkdir -p "$STAGE/include/rpcd" "$STAGE/share/rpcd/acl.d"
		cp "$SRC/rpcd/include/rpcd/"*.h "$STAGE/include/rpcd/"
		cp "$SRC/rpcd/unauthenticated.json" "$STAGE/share/rpcd/acl.d/"
		;;
	rpcd-mod-luci)
		# needs iwinfo's headers only (it dlopens libiwinfo when there is
		# one); installs lib/luci.so, and rpcd loads plugins from /usr/lib/rpcd
		mkdir -p "$STAGE/include"
		cp -r "$SRC/iwinfo/include/." "$STAGE/include/"
		EXTRA_CFLAGS="$(pkg-config --cflags libnl-3.0)" cmake_build rpcd-mod-luci
		mkdir -p "$STAGE/lib/rpcd"
		mv "$STAGE/lib/luci.so" "$STAGE/lib/rpcd/luci.so"
		;;
	# gcc 12 sees an overread in blobmsg_name() that is not there
	uhttpd) EXTRA_CFLAGS="$GNU -Wno-error=stringop-overread" cmake_build uhttpd -DTLS_SUPPORT=OFF -DLUA_SUPPORT=OFF -DUCODE_SUPPORT=ON -DUBUS_SUPPORT=ON ;;
	cgi-io)
		# LuCI's file up/download and exec helper; OpenWrt's package installs
		# it as /usr/libexec/cgi-io, linked from /www/cgi-bin/cgi-*
		EXTRA_CFLAGS=$GNU cmake_build cgi-io
		mkdir -p "$STAGE/libexec"
		mv "$STAGE/sbin/cgi-io" "$STAGE/libexec/cgi-io"
		;;
	ucode-mod-html)
		# LuCI's own ucode module (luci-base needs it), built as its package does
		mkdir -p "$STAGE/lib/ucode"
		gcc $CFLAGS_COMMON $GNU -fPIC -Wall -shared $LDFLAGS_COMMON -o "$STAGE/lib/ucode/html.so" \
			"$SRC/luci/contrib/package/ucode-mod-html/src/html.c" -lucode
		;;
	python)
		# python-ubus and pyuci (as the packages feed ships them), built by
		# $PYTHON's pip from their sdists against the libraries above, into
		# PREFIX/python (put it on PYTHONPATH)
		CFLAGS="$CFLAGS_COMMON $GNU" LDFLAGS="$LDFLAGS_COMMON" "${PYTHON:-python3}" -m pip install \
			-q --no-deps --no-binary :all: --upgrade --target "$PREFIX/python" ubus==0.1.3 pyuci==0.10.3
		;;
	luci-core)
		# luci-base's C part (translations, crypt): luci.mk builds src/ with
		# its Makefile and installs /usr/lib/ucode/luci/core.so, version.uc
		src=$(source_of luci-core)
		rm -rf "${BUILD:?}/luci-core"
		mkdir -p "$BUILD"
		cp -r "$src" "$BUILD/luci-core"
		make -C "$BUILD/luci-core" clean >/dev/null
		make -C "$BUILD/luci-core" CFLAGS="$CFLAGS_COMMON" FPIC=-fPIC \
			LDFLAGS="$LDFLAGS_COMMON" LUCI_VERSION="$(git -C "$src" describe --always 2>/dev/null || echo unknown)" \
			LUCI_GITBRANCH="$(git -C "$src" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)" \
			DESTDIR="$PREFIX" install >"$BUILD/luci-core.log" 2>&1 || {
			tail -40 "$BUILD/luci-core.log" >&2
			exit 1
		}
		;;
	*)
		echo "build.sh: unknown component $1 (known: $ALL)" >&2
		exit 2
		;;
	esac
}

for component in "$@"; do
	build_one "$component"
done
echo "build.sh: installed under $PREFIX/usr" >&2
