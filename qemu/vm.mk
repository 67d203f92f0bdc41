# System tests in QEMU (qemu/README.md): `make qemu-test` boots flowprobe, installed as its
# package installs it, in an x86-64 Debian VM and checks its exports against the wire;
# `make qemu-test OPENWRT_IMAGE=path` also runs the scenario on a real OpenWrt image,
# `make qemu-openwrt-test OPENWRT_IMAGE=path` only that.
.PHONY: qemu-test qemu-openwrt-test qemu-image qemu-shell tunnel-vm-test

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

# the tunnels this host's kernel cannot make (GRE, Geneve, IPIP, sit, ip6gre,
# ip6tnl, L2TP), made in a VM booting qemu-test's cached kernel
# (tests/tunnel_vm.py); here a skip is a failure
tunnel-vm-test: build
	kernel=$$(ls -d $(CURDIR)/build/qemu/base-* 2>/dev/null | head -n 1); \
	test -n "$$kernel" || { echo "tunnel-vm-test: no build/qemu/base-*: run make qemu-test first" >&2; exit 1; }; \
	FLOWPROBE_TUNNEL_KERNEL=$$kernel $(PYTHON) -m pytest -q -rs tests/test_tunnels_live.py \
		>build/tunnel-vm-test.log 2>&1; rc=$$?; cat build/tunnel-vm-test.log; \
	test $$rc -eq 0 && ! grep -q SKIPPED build/tunnel-vm-test.log
