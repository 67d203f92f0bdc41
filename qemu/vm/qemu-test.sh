#!/bin/sh
# make qemu-test: the system test in a QEMU x86-64 VM, then (with OPENWRT_IMAGE=path) the same
# scenario on a real OpenWrt image. Installs its host packages, builds or reuses the cached
# image (build/qemu/), runs the scenario, prints how long each part took; exits non-zero
# at the first part that fails.
set -eu
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
OPENWRT_IMAGE=${OPENWRT_IMAGE:-}
# in CI (CI=true) the VM test must run: a missing tool fails it instead of skipping it
if [ "${CI:-}" = true ]; then
	QEMU_VM_REQUIRED=${QEMU_VM_REQUIRED:-1}
	export QEMU_VM_REQUIRED
fi
timings=""

part() {
	name=$1
	shift
	echo "qemu-test: $name ..."
	started=$(date +%s)
	if "$@"; then status=0; else status=$?; fi
	took=$(($(date +%s) - started))
	timings="$timings
  $name: $took s"
	echo "qemu-test: $name took $took s (exit $status)"
	if [ "$status" != 0 ]; then
		echo "qemu-test: FAILED in $name; times:$timings"
		exit "$status"
	fi
}

if [ "${QEMU_TEST_SKIP_VM:-0}" != 1 ]; then
	part "host packages" qemu/vm/install-deps.sh
	part "image (cached when its inputs are unchanged)" "$PYTHON" qemu/vm/image.py
	part "x86-64 VM scenario" "$PYTHON" -m pytest qemu/vm/test_vm_scenario.py -q -rs -s
fi

if [ -n "$OPENWRT_IMAGE" ]; then
	part "host packages (OpenWrt emulators)" qemu/vm/install-deps.sh openwrt
	part "OpenWrt image scenario" "$PYTHON" -m pytest qemu/vm/test_openwrt_image.py -q -rs -s
else
	echo "qemu-test: SKIPPED the OpenWrt image scenario: no OPENWRT_IMAGE given" \
		"(make qemu-test OPENWRT_IMAGE=openwrt-x86-64-generic-squashfs-combined.img.gz," \
		"...-armsr-armv8-generic-initramfs-kernel.bin or ...-malta-be-vmlinux-initramfs.elf)"
fi
echo "qemu-test: passed; times:$timings"
