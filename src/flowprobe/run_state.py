"""What a run leaves for the next: a small JSON state file beside the control
socket (/var/run/flowprobe.state), one section a stage.

- "run": "running pid N since T" from the start, "stopped pid N at T" at a
  clean stop.  A `kill -9`, a crash or an OOM kill leaves "running": the next
  start says so in its log and in `status` (the flows it held since their
  last export were lost).
- "conntrack": the conntrack source's stop (when, how many connections were
  open), so the next start can say what ended while it was stopped.

/var/run is RAM on a router, so after a reboot there is no previous run to
speak of.  The file is opened once, at start, as root, and kept open: the
stop writes through that descriptor after the privilege drop.  It is never
opened through a link, must be a plain file of ours with one name, and is
read with a size bound; anything it holds that is not what we wrote is
ignored, never trusted.
"""

import json
import os
import stat
import time

MAX_BYTES = 4096


class RunState:
    def __init__(self, path):
        self.path = str(path)
        self.fd = None
        self.sections = {}      # as the previous run left them, then as this one sets them
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
        try:
            sections = json.loads(os.pread(fd, MAX_BYTES, 0) or b"{}")
        except (OSError, ValueError, RecursionError):
            sections = {}
        self.sections = sections if isinstance(sections, dict) else {}
        self.previous = self.sections.get("run") if isinstance(self.sections.get("run"),
                                                               str) else None
        self.put("run", f"running pid {os.getpid()} since {int(time.time())}")

    previous = None             # the previous run's "run" line, None on a first run

    @property
    def previous_unclean(self):
        """The previous run's line if it never reached a clean stop."""
        if self.previous and self.previous.startswith("running"):
            return self.previous
        return None

    def get(self, section):
        """A stage's section as the previous run left it (until put)."""
        return self.sections.get(section)

    def put(self, section, value):
        """Sets a section and writes the file; False if it could not."""
        self.sections[section] = value
        if self.fd is None:
            return False
        data = json.dumps(self.sections).encode()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError as e:
            self.error = f"cannot write the run state {self.path}: {e.strerror}"
            return False
        return True

    def stopped(self):
        self.put("run", f"stopped pid {os.getpid()} at {int(time.time())}")
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
