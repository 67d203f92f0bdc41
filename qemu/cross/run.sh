#!/bin/sh
# make cross-test: the C core built for big-endian MIPS, mipsel, armhf and
# aarch64 (Debian's cross compilers, libpcap cross-built from Debian's
# source), replaying the project's test inputs under qemu-user; every
# output must equal the x86-64 build's byte for byte.  The x86-64 driver
# also runs under ASan, LSan and UBSan (leaks, overflows, misaligned loads
# on any CPU), and qemu-mips traps
# misaligned loads as a MIPS CPU does.  Exits 1 on any difference.
# Builds and inputs are cached in build/cross/, keyed by what made them.
set -eu
cd "$(dirname "$0")/../.."

CROSS=build/cross
ARCHES=${CROSS_ARCHES:-"mips mipsel armhf aarch64"}
PYTHON=${PYTHON:-.venv/bin/python}
CORE_SOURCES="src/flowprobe/_cmeter.c $(echo src/flowprobe/cmeter/*.c)"
DRIVER_SOURCES=$(echo qemu/cross/*.c)
HEADERS="src/flowprobe/_cmeter.h fuzz/corpus_format.h $(echo src/flowprobe/cmeter/*.h src/flowprobe/cmeter/*.def qemu/cross/*.h)"
# as make lint, plus -Wcast-align=strict, reported but not fatal: libpcap's
# callback cast in capture.c is a false positive it cannot tell apart
CFLAGS="-O2 -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter -Wcast-align=strict
-Wno-error=cast-align"
# warnings are the plain builds' job: -O1 with sanitizers warns differently;
# ASan brings LeakSanitizer: the driver exits non-zero on any leak
UBSAN_FLAGS="-std=gnu99 -g -O1 -fsanitize=address,undefined -fsanitize=alignment
-fno-sanitize-recover=all -fno-omit-frame-pointer"

now() { date +%s.%N; }
since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.1f", end - start }'; }
log() { echo "cross: $*"; }

target_cc() {
	case $1 in
	x86_64 | x86_64-ubsan) echo gcc ;;
	mips) echo mips-linux-gnu-gcc ;;
	mipsel) echo mipsel-linux-gnu-gcc ;;
	armhf) echo arm-linux-gnueabihf-gcc ;;
	aarch64) echo aarch64-linux-gnu-gcc ;;
	esac
}

target_host() { $(target_cc "$1") -dumpmachine; }

# ath79 (big-endian) and ramips/MT7620 (little-endian) routers have 24K
# cores (24Kf: with the FPU Debian's hard-float userland needs); a MIPS32r2
# CPU raises an address error on a misaligned load, which qemu delivers as
# SIGBUS, where a router's kernel would fix it up, slowly
target_runner() {
	case $1 in
	x86_64) echo "" ;;
	x86_64-ubsan) echo "env UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" ;;
	mips) echo "qemu-mips-static -cpu 24Kf" ;;
	mipsel) echo "qemu-mipsel-static -cpu 24Kf" ;;
	armhf) echo "qemu-arm-static -cpu cortex-a7" ;;
	aarch64) echo "qemu-aarch64-static -cpu cortex-a53" ;;
	esac
}

# The driver for one target: the core as an archive (the driver takes only
# what it calls), linked statically with that target's libpcap.
build_driver() {
	arch=$1 cc=$(target_cc "$1") dir=$CROSS/$1
	pcap_dir=$CROSS/libpcap-${1%-ubsan}
	flags=$CFLAGS link=-static
	[ "$arch" = x86_64-ubsan ] && flags=$UBSAN_FLAGS && link=""
	key=$(cat $CORE_SOURCES $DRIVER_SOURCES $HEADERS "$pcap_dir/.key" | sha256sum)
	key="$key $($cc --version | head -1) $flags"
	[ -f "$dir/.key" ] && [ "$(cat "$dir/.key")" = "$key" ] && return 0
	rm -rf "$dir" && mkdir -p "$dir/obj"
	for source in $CORE_SOURCES $DRIVER_SOURCES; do
		# shellcheck disable=SC2086 # flags are words
		$cc $flags -I"$pcap_dir/include" -Isrc/flowprobe -Iqemu/cross -Ifuzz -c "$source" \
			-o "$dir/obj/$(basename "$source" .c).o" 2>>"$dir/warnings.log" ||
			{ log "$arch: $source does not build:" && grep -E 'error|warning' "$dir/warnings.log" && exit 1; }
	done
	(cd "$dir/obj" && ar rcs ../libcore.a $(for s in $CORE_SOURCES; do basename "$s" .c; done | sed 's/$/.o/'))
	# shellcheck disable=SC2086
	$cc $flags $link -o "$dir/replay" $(for s in $DRIVER_SOURCES; do echo "$dir/obj/$(basename "$s" .c).o"; done) \
		"$dir/libcore.a" "$pcap_dir/lib/libpcap.a" 2>"$dir/link.log" ||
		{ log "$arch: the driver does not link:" && cat "$dir/link.log" && exit 1; }
	rm -rf "$dir/obj"
	warnings=$(grep -c 'warning:' "$dir/warnings.log" || true)
	# listed once, for the target where alignment matters most
	if [ "$warnings" -gt 0 ] && [ "$arch" = mips ]; then
		log "$arch: $warnings compiler warning(s):" && grep 'warning:' "$dir/warnings.log"
	fi
	echo "$key" >"$dir/.key"
}

make_inputs() {
	key=$(cat qemu/cross/make_inputs.py fuzz/make_corpus.py tools/gen_capture.py | sha256sum)
	[ -f "$CROSS/inputs/.key" ] && [ "$(cat "$CROSS/inputs/.key")" = "$key" ] && return 0
	rm -rf "$CROSS/inputs"
	"$PYTHON" qemu/cross/make_inputs.py "$CROSS/inputs" >/dev/null
	echo "$key" >"$CROSS/inputs/.key"
}

# name|arguments: what each target replays
cases() {
	inputs=$CROSS/inputs
	echo "corpus|corpus $(echo "$inputs"/corpus/*)"
	for capture in "$inputs"/linktype-*.pcap; do
		echo "$(basename "$capture" .pcap)|pcap $capture"
	done
	echo "gen1|pcap $inputs/gen1.pcap"
	echo "gen1-big-endian-file|pcap $inputs/gen1-big-endian.pcap"
	echo "gen1-nanosecond-file|pcap $inputs/gen1-nanosecond.pcap"
	echo "gen2|pcap $inputs/gen2.pcap"
	echo "gen2-biflow|pcap --biflow --ifindex 7 $inputs/gen2.pcap"
	echo "gen2-short-timeouts|pcap --idle 2000 --active 5000 --unanswered 1000 --grace 0 --fragment-timeout 50 $inputs/gen2.pcap"
	echo "gen2-evict|pcap --max-flows 300 --max-fragments 4 $inputs/gen2.pcap"
	echo "gen2-refuse|pcap --max-flows 300 --refuse --biflow $inputs/gen2.pcap"
	echo "gen1-gen2-one-capture|pcap $inputs/gen1.pcap $inputs/gen2.pcap"
}

# Runs every case for one target into $CROSS/out/<target>/; returns the
# number of cases whose output differs from x86-64's (or that failed).
replay_target() {
	arch=$1 runner=$(target_runner "$1") failures=0
	out=$CROSS/out/$arch
	rm -rf "$out" && mkdir -p "$out"
	cases >"$out/.cases"
	while IFS='|' read -r name arguments; do
		status=0
		# shellcheck disable=SC2086 # runner and arguments are words
		$runner "$CROSS/$arch/replay" $arguments >"$out/$name.txt" 2>"$out/$name.err" || status=$?
		if [ "$status" -ne 0 ]; then
			log "$arch $name: the driver failed (status $status):"
			head -20 "$out/$name.err"
			failures=$((failures + 1))
		elif [ "$arch" != x86_64 ] && ! cmp -s "$CROSS/out/x86_64/$name.txt" "$out/$name.txt"; then
			log "$arch $name: output differs from x86_64:"
			diff -u "$CROSS/out/x86_64/$name.txt" "$out/$name.txt" | head -20
			failures=$((failures + 1))
		fi
	done <"$out/.cases"
	return "$failures"
}

start=$(now)
step=$(now)
qemu/cross/setup.sh
[ -x "$PYTHON" ] || { log "no $PYTHON: run 'make setup' first" && exit 1; }
qemu/cross/fetch_libpcap_source.sh "$CROSS"
make_inputs
log "setup, libpcap source and inputs: $(since "$step") s"

# Runs "$@" once per target in the background (qemu and configure are
# single-threaded; the targets share the cores), then prints each target's
# log in order; returns how many failed.  The command gets the target as
# its last argument and reports failures by its exit status.
for_each_target() {
	targets=$1
	shift
	for target in $targets; do
		(
			status=0
			"$@" "$target" >"$CROSS/logs/$target.log" 2>&1 || status=$?
			echo "$status" >"$CROSS/logs/$target.status"
		) &
	done
	wait
	failed=0
	for target in $targets; do
		cat "$CROSS/logs/$target.log"
		[ "$(cat "$CROSS/logs/$target.status")" -eq 0 ] || failed=$((failed + 1))
	done
	return "$failed"
}

build_target() {
	step=$(now)
	case $1 in
	*-ubsan) ;;
	*) qemu/cross/build_libpcap.sh "$CROSS/libpcap" "$(target_cc "$1")" "$(target_host "$1")" \
		"$CROSS/libpcap-$1" ;;
	esac
	build_driver "$1"
	log "$1: built in $(since "$step") s ($(grep -c 'warning:' "$CROSS/$1/warnings.log" || true) warnings)"
}

# Replays one target and says how it went; fails on any difference.
replay_and_report() {
	step=$(now)
	failures=0
	replay_target "$1" || failures=$?
	count=$(wc -l <"$CROSS/out/$1/.cases")
	lines=$(cat "$CROSS/out/$1"/*.txt | wc -l)
	if [ "$1" = x86_64 ]; then
		log "x86_64: $count cases replayed, the reference ($lines lines) in $(since "$step") s"
	else
		log "$1: $((count - failures))/$count cases identical to x86_64 ($lines lines) in $(since "$step") s"
	fi
	return "$failures"
}

mkdir -p "$CROSS/logs"
step=$(now)
# x86-64 first: the UBSan build links its libpcap
for_each_target x86_64 build_target || exit 1
for_each_target "x86_64-ubsan $ARCHES" build_target || exit 1
log "builds (libpcap $(cat "$CROSS/libpcap/.unpacked"), drivers): $(since "$step") s"
# bench/mips_instructions.py needs the drivers only
[ "${CROSS_BUILD_ONLY:-0}" = 1 ] && exit 0

step=$(now)
total_failures=0
# x86-64 first: the reference the others are compared with
for_each_target x86_64 replay_and_report || total_failures=$?
failed=0
for_each_target "x86_64-ubsan $ARCHES" replay_and_report || failed=$?
total_failures=$((total_failures + failed))
log "replays (targets side by side): $(since "$step") s"

# The comparison means something only if the records do not depend on the
# hash (which reads addresses in host byte order): another seed on x86-64
# must give the same output.
seed_check=same
"$CROSS/x86_64/replay" pcap --seed 99 "$CROSS/inputs/gen2.pcap" >"$CROSS/out/gen2-seed99.txt"
if ! cmp -s "$CROSS/out/x86_64/gen2.txt" "$CROSS/out/gen2-seed99.txt"; then
	log "gen2 with hash seed 99 differs from seed 1: records depend on the hash"
	diff -u "$CROSS/out/x86_64/gen2.txt" "$CROSS/out/gen2-seed99.txt" | head -20
	seed_check=differs
	total_failures=$((total_failures + 1))
fi

# The driver must say what the probe says: its records for a capture are
# those of `flowprobe read --json` (the Python path over the same core).
read_check="not run (no .venv/bin/flowprobe: make build)"
if [ -x .venv/bin/flowprobe ]; then
	read_check=same
	for capture in gen1 gen2; do
		.venv/bin/flowprobe read --json "$CROSS/inputs/$capture.pcap" 2>/dev/null >"$CROSS/out/$capture-read.json"
		sed -n 's/^record //p' "$CROSS/out/x86_64/$capture.txt" >"$CROSS/out/$capture-driver.json"
		if ! cmp -s "$CROSS/out/$capture-read.json" "$CROSS/out/$capture-driver.json"; then
			log "$capture: the driver's records differ from flowprobe read --json:"
			diff -u "$CROSS/out/$capture-read.json" "$CROSS/out/$capture-driver.json" | head -20
			read_check=differs
			total_failures=$((total_failures + 1))
		fi
	done
fi

summary=""
for target in x86_64-ubsan $ARCHES; do
	summary="$summary $target:$(sed -n 's/.*: \([0-9]*\/[0-9]*\) cases identical.*/\1/p' "$CROSS/logs/$target.log")"
done
if [ "$total_failures" -eq 0 ]; then
	log "PASS:$summary identical to x86_64; hash seed: $seed_check; flowprobe read: $read_check; $(since "$start") s in all"
else
	log "FAIL: $total_failures target(s) or checks with differences or failures:$summary; hash seed: $seed_check; flowprobe read: $read_check; $(since "$start") s in all"
	exit 1
fi
