"""The QEMU system tests import their helpers (next to this file) and tests/'s oracles by
module name. Not collected by `make test` (pytest's testpaths is tests/); `make qemu-test`
runs them."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parents[1] / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
