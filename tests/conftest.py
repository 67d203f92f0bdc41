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
    path = tmp_path_factory.mktemp("realstack") / "real.pcap"
    done = subprocess.run([str(RECORD_SCRIPT), str(path)], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        pytest.fail(f"record_capture.sh failed ({done.returncode}):\n{done.stderr}")
    return path
