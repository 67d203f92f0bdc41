# Cross-architecture replays of the C core (qemu/cross/README.md): built for
# big-endian MIPS, mipsel, armhf and aarch64, run under qemu-user, output
# compared with the x86-64 build's.  CROSS_ARCHES="mips" narrows the set.

.PHONY: cross-test

cross-test: build
	qemu/cross/run.sh
