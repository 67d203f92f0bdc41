# flowprobe: the developer's entry points.  `make run` and `make test` set
# everything up on a fresh Debian/Ubuntu machine first.

PYTHON := .venv/bin/python
C_SOURCES := $(wildcard src/flowprobe/*.c src/flowprobe/cmeter/*.c src/flowprobe/*.h src/flowprobe/cmeter/*.h)
EXTENSION_STAMP := build/.extension-built
SAMPLE := build/sample.pcap
PCAP ?= $(SAMPLE)

.PHONY: setup build run read test lint bench clean

.setup-done: tools/setup-debian.sh pyproject.toml setup.py
	./tools/setup-debian.sh
	@mkdir -p build && touch $(EXTENSION_STAMP) $@

setup: .setup-done

# rebuild the C core in place when its sources change
$(EXTENSION_STAMP): $(C_SOURCES) src/flowprobe/_build_cmeter.py | .setup-done
	$(PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	@mkdir -p build && touch $@

build: $(EXTENSION_STAMP)

$(SAMPLE): tools/gen_capture.py | .setup-done
	@mkdir -p build
	$(PYTHON) tools/gen_capture.py --packets 20000 --flows 500 --seed 1 -o $@

# the main job: the daemon on the default-route interface, with the live view
# (collectors from ./flowprobe.conf if it exists); q or Ctrl-C stops both
run: build
	$(PYTHON) tools/run_local.py

# meter a capture file (a generated sample unless PCAP=file given)
read: build $(PCAP)
	.venv/bin/flowprobe read $(PCAP)

# pytest exits 5 when it collected nothing; say so rather than fail
test: build
	$(PYTHON) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "test: no tests collected"; status=0; fi; exit $$status

lint: build
	.venv/bin/ruff check src tests tools $(wildcard bench)
	gcc -fsyntax-only -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter \
		-Isrc/flowprobe $(filter %.c,$(C_SOURCES))
	shfmt -d tools/*.sh .ci/run $(wildcard tests/realstack/*.sh)
	shfmt -d -sr -s files/etc/init.d/flowprobe  # as the OpenWrt SDK's CI checks init scripts

bench: build
	$(PYTHON) bench/bench.py
	$(PYTHON) bench/export_bench.py
	$(PYTHON) bench/live_bench.py

clean:
	rm -rf build .setup-done src/flowprobe/*.so src/*.egg-info
