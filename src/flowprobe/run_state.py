"""Whether the previous run ended cleanly: a small state file beside the
control socket, written "running" at start and "stopped" at a clean stop.

A `kill -9`, a crash or an OOM kill leaves "running": the next start says
so in its log and in `status` (its flows were never flushed, so what they
held since their last export is lost).  /var/run is RAM on a router, so
after a reboot there is no previous run to speak of.

The file is opened once, at start, as root, and kept open: the clean stop
writes through that descriptor after the privilege drop.  It is never
opened through a link, and must be a plain file of ours with one name.
"""

import os
import stat
import time


class RunState:
    def __init__(self, path):
        self.path = str(path)
        self.fd = None
        self.previous = None    # None: no earlier run here; else its last line
        self.error = None
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            self.error = f"cannot keep the run state in {self.path}: {e.strerror}"
            return
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
            os.close(fd)
            self.error = f"not using {self.path}: not a plain file of this user's"
            return
        self.fd = fd
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
        self.previous = text or None
        self._write(f"running pid {os.getpid()} since {int(time.time())}")

    @property
    def previous_unclean(self):
        """The previous run's line if it never reached a clean stop."""
        if self.previous and self.previous.startswith("running"):
            return self.previous
        return None

    def stopped(self):
        self._write(f"stopped pid {os.getpid()} at {int(time.time())}")
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _write(self, line):
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, (line + "\n").encode(), 0)
        except OSError as e:
            self.error = f"cannot write the run state {self.path}: {e.strerror}"
