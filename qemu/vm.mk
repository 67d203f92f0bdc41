# System tests in QEMU (qemu/README.md): `make qemu-test` boots flowprobe, installed as its
# package installs it, in an x86-64 Debian VM and checks its exports against the wire;
# `make qemu-test OPENWRT_IMAGE=path` also runs the scenario on a real OpenWrt image,
# `make qemu-openwrt-test OPENWRT_IMAGE=path` only that.
.PHONY: qemu-test qemu-openwrt-test qemu-image qemu-shell

OPENWRT_ENV = OPENWRT_IMAGE="$(OPENWRT_IMAGE)" OPENWRT_PACKAGES="$(OPENWRT_PACKAGES)" \
	OPENWRT_TARGET="$(OPENWRT_TARGET)"

qemu-test: build
	$(OPENWRT_ENV) qemu/vm/qemu-test.sh

qemu-openwrt-test: build
	QEMU_TEST_SKIP_VM=1 $(OPENWRT_ENV) qemu/vm/qemu-test.sh

# the cached x86-64 test image alone (build/qemu/)
qemu-image: build
	qemu/vm/install-deps.sh
	$(PYTHON) qemu/vm/image.py

# the test VM with its console on the terminal (`exit` powers it off)
qemu-shell: build
	qemu/vm/install-deps.sh
	$(PYTHON) qemu/vm/shell.py
