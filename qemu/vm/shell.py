"""The x86-64 test VM with its console on your terminal, for looking around by hand:
flowprobe installed as the package installs it, the guest at 10.77.0.2 / fd77::2 behind a tap
in a network namespace of its own (printed), where the host side is 10.77.0.1 / fd77::1.
`exit` in the guest's shell powers it off; Ctrl-A X quits QEMU.

    make qemu-shell
"""

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import image  # noqa: E402
import vm  # noqa: E402


def main():
    reason = vm.missing()
    if reason:
        sys.exit(f"qemu-shell: {reason}")
    ready = image.ensure_image()
    with tempfile.TemporaryDirectory(prefix="fpvm-share-") as share, vm.HostLink() as link:
        print(f"qemu-shell: host side: ip netns exec {link.namespace} ... "
              f"({vm.HOST_IP4}, {vm.HOST_IP6}); share {share} is /mnt/host in the guest")
        return subprocess.run(vm.debian_argv(ready, link, share)).returncode


if __name__ == "__main__":
    sys.exit(main())
