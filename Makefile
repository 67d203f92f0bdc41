# flowprobe: the developer's entry points.  `make run` and `make test` set
# everything up on a fresh Debian/Ubuntu machine first.

PYTHON := .venv/bin/python
C_SOURCES := $(wildcard src/flowprobe/*.c src/flowprobe/cmeter/*.c src/flowprobe/*.h src/flowprobe/cmeter/*.h \
	src/flowprobe/cmeter/*.def)
EXTENSION_STAMP := build/.extension-built
SAMPLE := build/sample.pcap
PCAP ?= $(SAMPLE)

.PHONY: setup build run read test lint bench fuzz fuzz-savefile test-asan clean dist

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
	.venv/bin/ruff check src tests tools bench fuzz qemu
	gcc -fsyntax-only -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter \
		-Isrc/flowprobe $(filter %.c,$(C_SOURCES)) fuzz/fuzz_meter.c fuzz/fuzz_savefile.c
	gcc -fsyntax-only -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter \
		-Isrc/flowprobe -Iqemu/cross -Ifuzz $(wildcard qemu/cross/*.c)
	shfmt -d tools/*.sh .ci/run $(wildcard tests/realstack/*.sh qemu/*/*.sh)
	# as the OpenWrt SDK's CI checks init scripts and the packages feed's test.sh
	shfmt -d -sr -s files/etc/init.d/flowprobe package/flowprobe/test.sh

# fuzzing (fuzz/README.md): libFuzzer + ASan + UBSan over the C core
FUZZ_TIME ?= 300
FUZZ_SOURCES := src/flowprobe/_cmeter.c $(wildcard src/flowprobe/cmeter/*.c) fuzz/fuzz_meter.c
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

build/fuzz/fuzz_meter: $(FUZZ_SOURCES) $(filter %.h %.def,$(C_SOURCES)) fuzz/corpus_format.h
	@mkdir -p build/fuzz
	clang $(FUZZ_FLAGS) -Isrc/flowprobe $(FUZZ_SOURCES) -lpcap -o $@

build/fuzz/.corpus-made: fuzz/make_corpus.py | .setup-done
	rm -rf build/fuzz/corpus
	$(PYTHON) fuzz/make_corpus.py build/fuzz/corpus
	@touch $@

# a third of FUZZ_TIME goes to the capture-file reader (fuzz-savefile)
FUZZ_SAVEFILE_TIME ?= $(shell expr $(FUZZ_TIME) / 3)
fuzz: build/fuzz/fuzz_meter build/fuzz/.corpus-made fuzz-savefile
	@mkdir -p build/fuzz/found build/fuzz/artifacts
	build/fuzz/fuzz_meter -max_total_time=$(shell expr $(FUZZ_TIME) - $(FUZZ_SAVEFILE_TIME)) \
		-max_len=8192 -print_final_stats=1 \
		-artifact_prefix=build/fuzz/artifacts/ build/fuzz/found build/fuzz/corpus

# savefile.c with a 64-byte buffer: short files cross its refills and growth
build/fuzz/fuzz_savefile: $(FUZZ_SOURCES:fuzz/fuzz_meter.c=fuzz/fuzz_savefile.c) \
		$(filter %.h %.def,$(C_SOURCES)) fuzz/corpus_format.h
	@mkdir -p build/fuzz
	clang $(FUZZ_FLAGS) -DSAVEFILE_BUFFER_BYTES=64u -Isrc/flowprobe \
		$(FUZZ_SOURCES:fuzz/fuzz_meter.c=fuzz/fuzz_savefile.c) -lpcap -o $@

build/fuzz/.savefile-corpus-made: fuzz/make_savefile_corpus.py tools/pcapfile.py | .setup-done
	rm -rf build/fuzz/savefile_corpus
	$(PYTHON) fuzz/make_savefile_corpus.py build/fuzz/savefile_corpus
	@touch $@

fuzz-savefile: build/fuzz/fuzz_savefile build/fuzz/.savefile-corpus-made
	@mkdir -p build/fuzz/savefile_found build/fuzz/artifacts
	build/fuzz/fuzz_savefile -max_total_time=$(FUZZ_SAVEFILE_TIME) -max_len=4096 \
		-print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/savefile- \
		build/fuzz/savefile_found build/fuzz/savefile_corpus

# the C core with ASan + UBSan under the tests that drive it (in build/asan/)
test-asan: build
	tools/sanitize.sh

bench: build
	$(PYTHON) bench/bench.py
	$(PYTHON) bench/export_bench.py
	$(PYTHON) bench/live_bench.py
	$(PYTHON) bench/conntrack_bench.py
	$(PYTHON) bench/enrich_bench.py
	$(PYTHON) bench/flows_query_bench.py
	$(PYTHON) bench/instructions_bench.py
	$(PYTHON) bench/collector_times_bench.py
	$(PYTHON) bench/history_bench.py
	$(PYTHON) bench/sflow_bench.py
	$(PYTHON) bench/tunnel_bench.py
	$(PYTHON) bench/footprint_bench.py
	$(PYTHON) bench/cache_bench.py
	$(PYTHON) bench/checksum_bench.py

clean:
	rm -rf build .setup-done src/flowprobe/*.so src/*.egg-info

# the versioned source tarball the OpenWrt feeds build from, and its sha256
# (package/flowprobe/Makefile's PKG_HASH): build/dist/ (README: Packaging for the feeds)
dist:
	python3 tools/dist.py

# system tests in QEMU and cross-architecture replays (qemu/*.mk; qemu/README.md)
-include $(wildcard qemu/*.mk)
