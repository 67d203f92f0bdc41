import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# the helpers in tests/ import each other by module name
sys.path.insert(0, os.path.dirname(__file__))

RECORD_SCRIPT = Path(__file__).parent / "realstack" / "record_capture.sh"


def real_stacks_missing():
    """Why the real-stacks capture cannot be recorded here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "tcpdump", "curl", "ping"):
        if shutil.which(tool) is None:
            return f"needs {tool} in PATH"
    # `ip netns list` works in containers that still cannot create one.
    probe = f"fp-probe-{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"cannot create a network namespace: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="session")
def real_stacks_capture(tmp_path_factory):
    """Traffic of real Linux stacks between two namespaces, recorded once a run
    (realstack/record_capture.sh); skipped with the reason where it cannot be."""
    reason = real_stacks_missing()
    if reason:
        pytest.skip(f"real-stacks capture: {reason}")
    path = tmp_path_factory.mktemp("realstack") / "real.pcap"
    done = subprocess.run([str(RECORD_SCRIPT), str(path)], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        pytest.fail(f"record_capture.sh failed ({done.returncode}):\n{done.stderr}")
    return path
