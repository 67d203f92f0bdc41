#!/bin/sh
# flowprobe under the real procd: builds OpenWrt's init and service manager
# with what it needs (libubox, ubus, uci, udebug, procd, ubox's logd,
# logread and validate_data, jsonfilter; python-ubus for the daemon's ubus
# object) from checkouts the user provides, and runs procd as PID 1 of a
# private PID, mount, network, UTS and IPC namespace, with flowprobe
# installed where package/flowprobe/Makefile installs it.
#
#   OPENWRT_SRC=dir tools/openwrt-userland/procd.sh build
#   OPENWRT_SRC=dir tools/openwrt-userland/procd.sh start RUNDIR
#   OPENWRT_SRC=dir tools/openwrt-userland/procd.sh boot RUNDIR  (start, keeping
#       what the last run wrote to /etc and /usr: a reboot)
#   tools/openwrt-userland/procd.sh exec RUNDIR COMMAND [ARG...]
#   tools/openwrt-userland/procd.sh stop RUNDIR       (poweroff: K scripts run)
#   tools/openwrt-userland/procd.sh kill RUNDIR       (no K scripts)
#
# OPENWRT_SRC holds clones named libubox, ubus, uci, udebug, procd, ubox and
# jsonpath (openwrt/jsonpath: jsonfilter; its commit e5a07f4 never reads
# standard input, check out the one before), and an OpenWrt tree named
# openwrt or lede (or OPENWRT_TREE=dir) for the shell libraries: base-files'
# rc.common and functions.sh, procd's procd.sh, reload_config and service,
# uci's uci.sh, ubox's log.init. python-ubus comes from
# $OPENWRT_SRC/ubus-*.tar.gz or $OPENWRT_SRC/pypi/ubus-*.tar.gz (its sdist),
# else pip downloads it. Builds go to OPENWRT_BUILD (default: beside
# OPENWRT_SRC, openwrt-build)/procd: never into this repository.
#
# The namespace sees the host's file system with overlays on /etc and /usr
# (the package and the built userland on top, writes to RUNDIR/upper),
# /etc/init.d holding only OpenWrt's scripts (RUNDIR/init.d), its own tmpfs
# on /run, /tmp and /dev (a few device nodes; /dev/log is logd's),
# /dev/console a pipe to RUNDIR/console.log, /var/log RUNDIR/log (logd's
# file), /proc/kmsg hidden, its own sysfs (so no host cgroups), busybox's sh
# as /bin/sh, and only lo (up). procd starts with container=flowprobe-procd
# in its environment, so it mounts nothing over /dev; it has no udevtrigger
# and no hotplug.json, so it writes nothing to the host's devices. The host
# is left untouched.
#
# The daemon is the repository's working tree: /usr/sbin/flowprobe is the
# package's console script with the shebang of this checkout's .venv
# python (as the package's FixShebang points it at /usr/bin/python3), so a
# test runs the code being edited, with its built C core, and python-ubus
# comes from the staged userland.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=$repo/.venv/bin/python

die() {
	echo "procd.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

build_dir() {
	: "${OPENWRT_SRC:?set OPENWRT_SRC to the directory of the upstream checkouts}"
	src=$(cd "$OPENWRT_SRC" && pwd)
	build=${OPENWRT_BUILD:-$(dirname "$src")/openwrt-build}/procd
	root=$build/root
	stage=$build/stage
	case $build/ in
	"$repo"/*) die "OPENWRT_BUILD must be outside the repository" ;;
	esac
}

openwrt_tree() {
	for tree in ${OPENWRT_TREE-} "$src/openwrt" "$src/lede"; do
		[ -f "$tree/package/base-files/files/etc/rc.common" ] && return 0
	done
	die "no OpenWrt tree: set OPENWRT_TREE or clone one (e.g. coolsnowwolf/lede) as $src/openwrt"
}

# the commit (and a mark if modified) of a checkout: a changed one rebuilds
revision() {
	git -C "$1" rev-parse HEAD 2>/dev/null || echo unknown
	git -C "$1" status --porcelain 2>/dev/null | head -1
}

# cmake_build NAME [CMAKE_ARGS...]: $src/NAME built and installed in $root
cmake_build() {
	name=$1
	shift
	[ -d "$src/$name" ] || die "no checkout $src/$name"
	stamp=$build/$name.stamp
	if [ -f "$stamp" ] && [ "$(revision "$src/$name")" = "$(cat "$stamp")" ]; then
		return 0
	fi
	echo "procd.sh: building $name ($(git -C "$src/$name" log -1 --format='%h %cs' 2>/dev/null || echo '?'))" >&2
	rm -rf "$build/obj/$name"
	mkdir -p "$build/obj/$name"
	dir=$src/$name
	if [ "$name" = jsonpath ]; then
		# builds its lemon parser generator from a path relative to the build
		cp -a "$src/$name/." "$build/obj/$name/"
		dir=$build/obj/$name
	fi
	(
		cd "$build/obj/$name"
		cmake "$dir" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib \
			-DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_FIND_ROOT_PATH="$root" \
			-DCMAKE_C_COMPILER="$build/cc" -DCMAKE_C_FLAGS="-I$root/usr/include" \
			-DCMAKE_EXE_LINKER_FLAGS="-L$root/usr/lib -Wl,-rpath-link,$root/usr/lib" \
			-DCMAKE_SHARED_LINKER_FLAGS="-L$root/usr/lib -Wl,-rpath-link,$root/usr/lib" \
			-DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF -DUNIT_TESTING=OFF "$@" >cmake.log 2>&1 ||
			{
				cat cmake.log >&2
				exit 1
			}
		if [ "$name" = udebug ]; then
			# the library only: the rest needs ucode
			make -j2 udebug >make.log 2>&1 || {
				tail -40 make.log >&2
				exit 1
			}
			install -D -m 644 libudebug.so "$root/usr/lib/libudebug.so"
			install -D -m 644 "$src/udebug/udebug.h" "$root/usr/include/udebug.h"
		else
			make -j2 >make.log 2>&1 && make install DESTDIR="$root" >>make.log 2>&1 || {
				tail -40 make.log >&2
				exit 1
			}
		fi
	) || die "building $name failed (log in $build/obj/$name)"
	revision "$src/$name" >"$stamp"
}

python_ubus() {
	target=$build/python
	[ -f "$target/.done" ] && return 0
	sdist=$(ls "$src"/ubus-*.tar.gz "$src"/pypi/ubus-*.tar.gz 2>/dev/null | tail -1) || true
	if [ -z "$sdist" ]; then
		mkdir -p "$build/dl"
		"$python" -m pip download -q --no-deps --no-binary :all: -d "$build/dl" 'ubus==0.1.3' ||
			die "no python-ubus sdist: put ubus-0.1.3.tar.gz in $src"
		sdist=$(ls "$build"/dl/ubus-*.tar.gz | tail -1)
	fi
	echo "procd.sh: building python-ubus from $(basename "$sdist")" >&2
	rm -rf "$target"
	CFLAGS="-I$root/usr/include" LDFLAGS="-L$root/usr/lib -Wl,-rpath-link,$root/usr/lib" \
		"$python" -m pip install -q --no-deps --no-build-isolation --no-cache-dir \
		--target "$target" "$sdist" >"$build/python-ubus.log" 2>&1 || {
		tail -30 "$build/python-ubus.log" >&2
		die "building python-ubus failed"
	}
	touch "$target/.done"
}

# where an OpenWrt path lands on this host (/sbin is /usr/sbin on merged /usr)
host_path() {
	echo "$stage$(realpath -m "$1")"
}

put() { # put MODE FILE OPENWRT_PATH
	install -D -m "$1" "$2" "$(host_path "$3")"
}

do_build() {
	build_dir
	openwrt_tree
	command -v cmake >/dev/null || die "cmake is needed"
	command -v busybox >/dev/null || die "busybox is needed (its sh: dash lacks let)"
	[ -x "$python" ] || die "no $python: make build first"
	mkdir -p "$build" "$root"
	# a compiler that warns rather than fails (newer gcc than upstream's) and
	# has strlcpy (glibc has it only since 2.38)
	cat >"$build/compat.h" <<'EOF'
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>
#if defined(__GLIBC__) && !__GLIBC_PREREQ(2, 38)
static inline size_t strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = 0;
	}
	return len;
}
#endif
EOF
	printf '#!/bin/sh\nexec %s "$@" -Wno-error -include %s\n' "${CC:-gcc}" "$build/compat.h" >"$build/cc"
	chmod 755 "$build/cc"
	cmake_build libubox
	cmake_build ubus
	cmake_build uci
	cmake_build udebug -Ducode_include_dir="$build/no-ucode"
	cmake_build procd -DSECCOMP_SUPPORT=OFF -DUTRACE_SUPPORT=OFF -DJAIL_SUPPORT=OFF
	cmake_build ubox
	cmake_build jsonpath
	python_ubus

	# the layer put over the host: only what OpenWrt would have
	rm -rf "$stage"
	mkdir -p "$stage"
	r=$root/usr
	mkdir -p "$(host_path /usr/lib)"
	for f in libubox libblobmsg_json libjson_script libubus libuci libudebug libvalidate libsetlbf; do
		cp -a "$r/lib/$f.so"* "$(host_path /usr/lib)/"
	done
	put 755 "$r/sbin/procd" /sbin/procd
	put 755 "$r/sbin/ubusd" /sbin/ubusd
	put 755 "$r/bin/ubus" /bin/ubus
	put 755 "$r/bin/uci" /sbin/uci
	put 755 "$r/sbin/logd" /sbin/logd
	put 755 "$r/sbin/logread" /sbin/logread
	put 755 "$r/sbin/validate_data" /sbin/validate_data
	put 755 "$r/bin/jshn" /usr/bin/jshn
	put 644 "$r/share/libubox/jshn.sh" /usr/share/libubox/jshn.sh
	put 755 "$r/bin/jsonpath" /usr/bin/jsonfilter
	mkdir -p "$(host_path /usr/lib/flowprobe-procd)"
	cp -a "$build/python/." "$(host_path /usr/lib/flowprobe-procd/python)"

	t=$tree/package
	base=$t/base-files/files
	put 755 "$base/etc/rc.common" /etc/rc.common
	put 644 "$base/lib/functions.sh" /lib/functions.sh
	for f in "$base"/lib/functions/*.sh; do
		put 644 "$f" "/lib/functions/$(basename "$f")"
	done
	put 644 "$t/system/procd/files/procd.sh" /lib/functions/procd.sh
	put 755 "$t/system/procd/files/reload_config" /sbin/reload_config
	put 755 "$t/system/procd/files/service" /sbin/service
	put 644 "$t/system/uci/files/lib/config/uci.sh" /lib/config/uci.sh
	put 755 "$t/system/ubox/files/log.init" /etc/init.d/log
	put 644 "$t/system/ubox/files/logd.json" /usr/share/acl.d/logd.json
	ln -s /usr/bin/busybox "$(host_path /bin/sh)"

	# the init: the two rcS lines of OpenWrt's inittab, nothing on a console
	mkdir -p "$stage/etc/config" "$stage/etc/rc.d"
	printf '%s\n' '::sysinit:/etc/init.d/rcS S boot' '::shutdown:/etc/init.d/rcS K shutdown' \
		>"$stage/etc/inittab"
	printf '%s\n' "config system" "	option hostname 'flowprobe-procd'" \
		"	option log_size '256'" "	option log_file '/var/log/messages'" >"$stage/etc/config/system"
	ln -s ../init.d/log "$stage/etc/rc.d/S12log"
	# of OpenWrt's boot script only its last step: reload_config's baseline
	# (without it the first reload_config after a boot sends no event)
	printf '%s\n' '#!/bin/sh /etc/rc.common' 'START=10' \
		'boot() {' '	/sbin/reload_config' '}' >"$stage/etc/init.d/boot"
	chmod 755 "$stage/etc/init.d/boot"
	ln -s ../init.d/boot "$stage/etc/rc.d/S10boot"
	{
		revision "$src/procd" | head -1 | sed 's/^/procd /'
		revision "$src/ubox" | head -1 | sed 's/^/ubox /'
		revision "$src/jsonpath" | head -1 | sed 's/^/jsonpath /'
		revision "$src/libubox" | head -1 | sed 's/^/libubox /'
		revision "$src/ubus" | head -1 | sed 's/^/ubus /'
		revision "$src/uci" | head -1 | sed 's/^/uci /'
		revision "$src/udebug" | head -1 | sed 's/^/udebug /'
		ls "$build/python" | sed -n 's/^\(ubus-.*\)\.dist-info$/python-\1/p'
		echo "tree $tree $(revision "$tree" | head -1)"
	} >"$build/revisions"
	# jsonfilter must read standard input (network.sh and others pipe into it)
	[ "$(echo '{"a":1}' | LD_LIBRARY_PATH="$r/lib" "$r/bin/jsonpath" -e '@.a' 2>/dev/null)" = 1 ] ||
		die "this jsonfilter ($(head -3 "$build/revisions" | tail -1)) ignores standard input: check out the commit before e5a07f4"
	echo "procd.sh: built in $build" >&2
}

# flowprobe as package/flowprobe/Makefile installs it, into RUNDIR/package
# (a layer of its own)
install_flowprobe() {
	pkg=$1
	rm -rf "$pkg"
	mkdir -p "$pkg"
	{
		echo "#!$python"
		echo "import sys"
		echo "# python-ubus built against the userland's libubus"
		echo "sys.path.insert(0, '/usr/lib/flowprobe-procd/python')"
		echo "from flowprobe.cli import main"
		echo "sys.exit(main())"
	} >"$pkg/flowprobe"
	install -D -m 755 "$pkg/flowprobe" "$pkg/usr/sbin/flowprobe"
	rm "$pkg/flowprobe"
	install -D -m 755 "$repo/files/etc/init.d/flowprobe" "$pkg/etc/init.d/flowprobe"
	install -D -m 644 "$repo/files/etc/config/flowprobe" "$pkg/etc/config/flowprobe"
	install -D -m 644 "$repo/files/usr/share/acl.d/flowprobe.json" \
		"$pkg/usr/share/acl.d/flowprobe.json"
}

# the namespace's side of start: runs as its PID 1, then becomes procd
inside() {
	run=$1 stage=$2
	[ $$ = 1 ] || die "inside: not PID 1 of a new PID namespace; procd would take the host"
	pkg=$run/package
	for d in etc usr; do
		mkdir -p "$run/upper/$d" "$run/work/$d"
		mount -t overlay overlay -o "lowerdir=$pkg/$d:$stage/$d:/$d,upperdir=$run/upper/$d,workdir=$run/work/$d" "/$d"
	done
	# only OpenWrt's init scripts (kept by a boot, as what the run wrote)
	mkdir -p "$run/init.d"
	cp -a "$stage/etc/init.d/." "$pkg/etc/init.d/." "$run/init.d/"
	mount --bind "$run/init.d" /etc/init.d
	mount -t sysfs sysfs /sys
	# a private /dev: logd makes /dev/log, procd opens /dev/console
	mount -t tmpfs -o mode=755 tmpfs /dev
	mknod -m 666 /dev/null c 1 3
	mknod -m 666 /dev/zero c 1 5
	mknod -m 666 /dev/full c 1 7
	mknod -m 666 /dev/random c 1 8
	mknod -m 666 /dev/urandom c 1 9
	mknod -m 666 /dev/tty c 5 0
	ln -s pts/ptmx /dev/ptmx
	touch /dev/console
	mount --bind "$run/console.fifo" /dev/console
	mkdir -p /dev/pts /dev/shm
	mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
	mount -t tmpfs tmpfs /dev/shm
	mount --bind /dev/null /proc/kmsg
	# logd's file (system.@system[0].log_file): seen from the host, and
	# written until the end (log stops at K89, after the services)
	mkdir -p "$run/log"
	mount --bind "$run/log" /var/log
	# last: RUNDIR may be in /tmp
	for d in /run /tmp; do
		mount -t tmpfs -o mode=1777 tmpfs "$d"
	done
	mkdir -p /run/lock /tmp/run
	ip link set lo up
	grep -q '^flowprobe:' /etc/passwd || {
		echo 'flowprobe:x:60226:60226:flowprobe:/var/run/flowprobe:/bin/false' >>/etc/passwd
		echo 'flowprobe:x:60226:' >>/etc/group
	}
	cd /
	exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin container=flowprobe-procd /sbin/procd -S
}

state() {
	run=$(cd "$1" 2>/dev/null && pwd) || die "no run directory $1"
	pid=$(cat "$run/pid" 2>/dev/null) || die "not started: no $run/pid"
}

# run a command in the namespace, with the environment procd gives services
ns_exec() {
	state "$1"
	shift
	[ -d "/proc/$pid" ] || die "procd (pid $pid) is not running"
	exec nsenter -t "$pid" -p -m -n -u -i -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root container=flowprobe-procd "$@"
}

start_failed() {
	kill -KILL "$(cat "$run/unshare.pid")" "${pid-}" 2>/dev/null || true
	kill "$(cat "$run/console.pid")" 2>/dev/null || true
	rm -f "$run/pid" "$run/console.pid"
	die "$1 (see $run/procd.log and $run/console.log)"
}

do_start() {
	[ $# = 1 ] || usage
	mkdir -p "$1"
	run=$(cd "$1" && pwd)
	[ "$(id -u)" = 0 ] || die "needs root (namespaces, mounts)"
	if [ -f "$run/pid" ] && [ -d "/proc/$(cat "$run/pid")" ]; then
		die "already running in $run (pid $(cat "$run/pid"))"
	fi
	build_dir
	[ -f "$build/revisions" ] || die "not built: run $0 build first"
	# a boot keeps what the last run wrote, as a router's flash does
	if [ "$command" != boot ] || [ ! -d "$run/package" ]; then
		rm -rf "$run/upper" "$run/init.d"
		install_flowprobe "$run/package"
	fi
	rm -rf "$run/work" "$run/pid" "$run/console.fifo"
	mkdir -p "$run/package/etc" "$run/package/usr"
	# the console: a pipe whose reader (holding a writer too) never sees an end
	mkfifo "$run/console.fifo"
	sh -c 'exec 3<>"$1"; exec cat <&3 >>"$2"' console "$run/console.fifo" "$run/console.log" \
		>/dev/null 2>&1 </dev/null &
	echo $! >"$run/console.pid"
	setsid unshare -p -m -n -u -i --fork --mount-proc --propagation private \
		sh "$here/procd.sh" inside "$run" "$stage" >>"$run/procd.log" 2>&1 </dev/null &
	echo $! >"$run/unshare.pid"
	# procd is the child of unshare
	i=0
	while :; do
		pid=$(cat "/proc/$(cat "$run/unshare.pid")/task/$(cat "$run/unshare.pid")/children" 2>/dev/null | cut -d' ' -f1) || true
		[ -n "$pid" ] && break
		i=$((i + 1))
		[ $i -lt 100 ] || start_failed "no procd"
		sleep 0.1
	done
	echo "$pid" >"$run/pid"
	# ready: ubus answers and the boot's rcS has started logd
	i=0
	until "$0" exec "$run" ubus -t 1 call log read '{"lines":1,"stream":false}' >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 150 ] || start_failed "procd did not come up in 30 s"
		sleep 0.2
	done
	echo "procd.sh: procd is PID 1 of the namespace (host pid $pid), run dir $run" >&2
}

# wait for the namespace to end; then the console reader
finish() {
	i=0
	while [ -d "/proc/$pid" ] && [ $i -lt "$1" ]; do
		i=$((i + 1))
		sleep 0.2
	done
	[ -d "/proc/$pid" ] && return 1
	cpid=$(cat "$run/console.pid" 2>/dev/null) && kill "$cpid" 2>/dev/null || true
	rm -f "$run/pid" "$run/console.pid"
}

do_stop() {
	state "$1"
	# procd: SIGUSR2 (or SIGPWR) is poweroff: rcS K shutdown, then every
	# process TERM then KILL, then reboot(2), which in a PID namespace ends it
	kill -USR2 "$pid" 2>/dev/null || true
	finish 150 || {
		echo "procd.sh: no poweroff in 30 s: killing" >&2
		kill -KILL "$pid" 2>/dev/null || true
		finish 50
	}
}

do_kill() {
	state "$1"
	kill -KILL "$pid" 2>/dev/null || true
	finish 50
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
build) do_build ;;
start | boot) do_start "$@" ;;
exec)
	[ $# -ge 2 ] || usage
	ns_exec "$@"
	;;
stop) do_stop "$@" ;;
kill) do_kill "$@" ;;
inside) inside "$@" ;;
install-package)
	[ $# = 1 ] || usage
	install_flowprobe "$1"
	;;
*) usage ;;
esac
