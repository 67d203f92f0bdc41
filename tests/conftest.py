import os
import subprocess
import sys
from pathlib import Path

import pytest

# the helpers in tests/ import each other by module name
sys.path.insert(0, os.path.dirname(__file__))

import netlab  # noqa: E402  (found through the path above)

RECORD_SCRIPT = Path(__file__).parent / "realstack" / "record_capture.sh"


@pytest.fixture(scope="session")
def real_stacks_capture(tmp_path_factory):
    """Traffic of real Linux stacks between two namespaces, recorded once a run
    (realstack/record_capture.sh); skipped with the reason where it cannot be."""
    reason = netlab.missing()
    if reason:
        pytest.skip(f"real-stacks capture: {reason}")
    from realstack import simple_truth
    directory = tmp_path_factory.mktemp("realstack")
    for attempt in range(3):
        path = directory / f"real-{attempt}.pcap"
        done = subprocess.run([str(RECORD_SCRIPT), str(path)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            pytest.fail(f"record_capture.sh failed ({done.returncode}):\n{done.stderr}")
        # a starved tcpdump can miss the last packets: then record again
        report = simple_truth.truth_report(str(path))
        if report.tcp_rst_packets and report.ipv4_fragments and report.ipv6_fragments:
            return path
    return path  # test_capture_has_what_the_test_needs says what is missing


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Figures tests measured (flood memory, drops), shown at the end of the run."""
    figures = getattr(config, "flowprobe_figures", [])
    if figures:
        terminalreporter.section("measured")
        for line in figures:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def generated_capture(tmp_path_factory):
    """tools/gen_capture.py's mixed IPv4/IPv6 traffic (4000 packets, 150 flows, seed 3), made
    once a run for the collector tests; its truth is realstack/simple_truth's reading."""
    path = tmp_path_factory.mktemp("generated-capture") / "gen.pcap"
    generator = Path(__file__).resolve().parent.parent / "tools" / "gen_capture.py"
    subprocess.run([sys.executable, str(generator), "-o", str(path), "--packets", "4000",
                    "--flows", "150", "--seed", "3"], check=True, capture_output=True)
    return path
