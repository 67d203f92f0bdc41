#!/bin/sh
# Builds the C core with AddressSanitizer + UndefinedBehaviorSanitizer into a
# copy of the package under build/asan/ (the normal build in .venv is not
# touched) and runs the tests that drive the C core against it.
#   tools/sanitize.sh [pytest arguments]
# Python is not built with ASan, so libasan is preloaded into it (and into
# every process the tests start); leak detection is off because the
# interpreter keeps its own allocations to the end.  Any sanitizer report
# fails the run, even one from a subprocess whose exit status a test ignored.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
python="$root/.venv/bin/python"
work="$root/build/asan"
logs="$work/logs"
tests="tests/test_decode.py tests/test_fragments.py tests/test_flow_table.py
tests/test_properties.py tests/test_cli.py tests/test_export_encoders.py tests/test_history_rows.py
tests/test_flow_macs.py tests/test_enrich_prefixes.py tests/test_enrich_stage.py
tests/test_enrich_routes.py tests/test_conntrack_exactly_once.py tests/test_sampling.py
tests/test_tcp_end.py tests/test_icmp_errors.py tests/test_flow_slots.py
tests/test_tunnels.py tests/test_l2_flows.py tests/test_checksums.py
tests/test_enrich_route_lookup.py tests/test_savefile.py"

# gcc's runtime, so that the library preloaded is the one the build links
export CC=gcc
libasan=$(gcc -print-file-name=libasan.so)
[ -f "$libasan" ] || {
	echo "sanitize: libasan not found (gcc -print-file-name=libasan.so)" >&2
	exit 1
}

rm -rf "$work"
mkdir -p "$work" "$logs"
mkdir -p "$work/tools"
cp -R src tests pyproject.toml "$work/"
cp tools/pcapfile.py tools/gen_capture.py "$work/tools/" # the tests' pcap writer; a capture
rm -f "$work"/src/flowprobe/_cmeter_ffi*

echo "sanitize: building the C core with ASan + UBSan"
sanitizers="-fsanitize=address,undefined -fno-sanitize-recover=all"
(
	cd "$work/src"
	FLOWPROBE_EXTRA_CFLAGS="$sanitizers -fno-omit-frame-pointer -g -O1" \
		FLOWPROBE_EXTRA_LDFLAGS="$sanitizers" \
		"$python" flowprobe/_build_cmeter.py >"$logs/build.log" 2>&1
) || {
	cat "$logs/build.log" >&2
	exit 1
}

sanitized() {
	PYTHONPATH="$work/src" LD_PRELOAD="$libasan" \
		ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$logs/asan" \
		UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan" \
		"$@"
}

cd "$work"
# the tests must meter with the instrumented module, not the one in .venv
module=$(sanitized "$python" -c 'import flowprobe._cmeter_ffi as m; print(m.__file__)')
case "$module" in
"$work"/src/flowprobe/*) ;;
*)
	echo "sanitize: imported $module, not the sanitized build" >&2
	exit 1
	;;
esac

echo "sanitize: running the C-facing tests under the sanitizers"
status=0
# shellcheck disable=SC2086 # the test list is meant to split
# the real-stacks recording runs tcpdump and real clients, which hang with
# libasan preloaded into them; the capture's metering is covered without it
sanitized "$python" -m pytest -p no:cacheprovider -q $tests -k "not real_stacks" "$@" ||
	status=$?
for report in "$logs"/asan.* "$logs"/ubsan.*; do
	[ -e "$report" ] || continue
	echo "sanitize: sanitizer report $report:" >&2
	cat "$report" >&2
	status=1
done
[ "$status" -eq 0 ] && echo "sanitize: no sanitizer reports"
exit "$status"
