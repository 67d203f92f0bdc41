"""An on-disk overflow for one collector's export queue, with a size budget.

Off by default.  When a collector is unreachable for longer than its queue
lasts, messages go to a file instead of being counted as not sent, and are
replayed in order once it is back: sequence numbers stay contiguous, so the
collector sees no gap.  Beyond the budget they are counted as not sent, as
without a spool.

Where it lives matters on a router: /var is RAM there (tmpfs), so a spool
costs memory up to its budget and does not survive a reboot; on the flash
overlay every outage would be written to flash, wearing it and filling the
overlay.  Hence off unless a budget is set, and on a router put spool_dir
on RAM or on a USB disk.

The file is an append-only list of (length, records, message); it is
emptied (truncated) whenever everything in it has been replayed, and what
was replayed is cut from its front when a new message would not fit
otherwise (a collector back from an outage takes the replay and the new
messages behind it, within the same budget).  A spool
left by an earlier run is discarded at start: its messages belonged to an
exporting session that no longer exists.

The directory belongs to the daemon's user while the file is created by
root (at start, before the privilege drop): the user could have planted a
link at the name, so the file is created new (O_CREAT | O_EXCL) and never
followed (O_NOFOLLOW), and a name already taken is refused.

A spool never raises once open: a write, read or truncate that fails
(ENOSPC on a full tmpfs, EIO) counts what it held as not sent, empties it
and goes on; export carries on without it until the next message fits.
"""

import errno
import os
import re
import struct

ENTRY = struct.Struct("!II")   # message octets, records in it
COPY_CHUNK = 1 << 16
SPOOL_FILE = re.compile(r"[A-Za-z0-9_.-]+\.[0-9]+\.[0-9]+\.spool")   # as collectors.py names them


class SpoolError(OSError):
    pass


def prepare_spool_dir(path, user=None, clear_stale=True):
    """The collectors' spool directory, made (for the daemon's user) if it
    is missing; with clear_stale, an earlier run's spools in it are removed
    (their sessions no longer exist). SpoolError says why it cannot be."""
    from flowprobe.privileges import PrivilegeError, account
    try:
        try:
            os.mkdir(path, 0o750)
            # only a directory made here becomes the user's: spool_dir '/etc'
            # must not hand /etc over
            if os.geteuid() == 0 and user:
                owner = account(user)
                os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
        except FileExistsError:
            pass
        if clear_stale:
            # only files named as this daemon names them; unlink() removes a
            # link, never what it points to
            for stale in os.scandir(path):
                if SPOOL_FILE.fullmatch(stale.name) and not stale.is_dir(follow_symlinks=False):
                    os.unlink(stale.path)
    except (OSError, PrivilegeError) as e:
        raise SpoolError(f"spool_dir {path}: {getattr(e, 'strerror', None) or e}") from None
    return path


def _create(path):
    """A new file at path, never through a link; a name already taken (an
    earlier run's spool, or a link the directory's owner planted) is removed
    first, once: unlink() removes the link, not what it points to."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in (1, 2):
        try:
            return os.open(path, flags, 0o600)
        except FileExistsError:
            if attempt == 2:
                break
            try:
                os.unlink(path)
            except OSError as e:
                raise SpoolError(f"cannot create the spool {path}: {e.strerror}") from None
        except OSError as e:
            raise SpoolError(f"cannot create the spool {path}: {e.strerror}") from None
    raise SpoolError(f"cannot create the spool {path}: the name keeps being taken")


class Spool:
    """Raw descriptor I/O (pread, pwrite, ftruncate): nothing is buffered, so
    a write that failed leaves nothing behind to fail again at the next
    seek or flush, and what the file already held stays readable."""

    def __init__(self, path, budget_bytes):
        self.path, self.budget = str(path), budget_bytes
        self._fd = _create(self.path)
        self._read_at = self._write_at = 0
        self.messages = self.records = 0          # waiting in it now
        self.messages_spooled = self.records_spooled = 0
        self.write_errors = 0
        self.errors = 0                           # reads and truncates that failed
        self.messages_lost = self.records_lost = 0   # held when the file failed
        self.last_error = None

    def __len__(self):
        return self.messages

    @property
    def octets(self):
        return self._write_at - self._read_at

    # the file's I/O, in one place (tests stand a failing disk in here)

    def _pwrite(self, data, offset):
        written = os.pwrite(self._fd, data, offset)
        if written != len(data):    # a full disk can take part of it first
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _pread(self, length, offset):
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise OSError(errno.EIO, "the spool file is shorter than its entries")
        return data

    def _truncate(self, length):
        os.ftruncate(self._fd, length)

    def push(self, data, records):
        """Appends a message; False when it does not fit the budget (or the
        write failed): the caller counts it as not sent."""
        size = ENTRY.size + len(data)
        if self._write_at + size > self.budget and self._read_at:
            try:
                self._compact()
            except OSError as e:
                self._failed(e)
                return False
        if self._write_at + size > self.budget:
            return False
        try:
            self._pwrite(ENTRY.pack(len(data), records) + bytes(data), self._write_at)
        except OSError as e:
            # a partial entry past _write_at is never read: it is overwritten
            self.write_errors += 1
            self.last_error = f"writing {self.path}: {e.strerror}"
            return False
        self._write_at += size
        self.messages += 1
        self.records += records
        self.messages_spooled += 1
        self.records_spooled += records
        return True

    def _compact(self):
        """Moves what waits to the front of the file (copied in chunks: the
        spool never costs its size in memory)."""
        source, target = self._read_at, 0
        while source < self._write_at:
            chunk = self._pread(min(COPY_CHUNK, self._write_at - source), source)
            self._pwrite(chunk, target)
            source += len(chunk)
            target += len(chunk)
        self._truncate(target)
        self._write_at, self._read_at = target, 0

    def pop(self):
        """(data, records) of the oldest message, or None (also when the file
        failed: what it held is then counted in records_lost)."""
        if not self.messages:
            return None
        try:
            length, records = ENTRY.unpack(self._pread(ENTRY.size, self._read_at))
            data = self._pread(length, self._read_at + ENTRY.size)
        except (OSError, struct.error) as e:
            self._failed(e)
            return None
        self._read_at += ENTRY.size + length
        self.messages -= 1
        self.records -= records
        if not self.messages:  # all replayed: start the file over
            try:
                self._truncate(0)
            except OSError as e:
                self._failed(e)
            self._read_at = self._write_at = 0
        return data, records

    def _failed(self, error):
        """The file cannot be trusted any more: what it held is lost (and
        counted), and it starts over empty if it can."""
        self.errors += 1
        self.last_error = f"{self.path}: {getattr(error, 'strerror', None) or error}"
        self.records_lost += self.records
        self.messages_lost += self.messages
        self.messages = self.records = 0
        self._read_at = self._write_at = 0
        try:
            self._truncate(0)
        except OSError:
            pass

    def take_lost(self):
        """(messages, records) lost to file errors since the last call: the
        transport counts them as not sent."""
        lost = (self.messages_lost, self.records_lost)
        self.messages_lost = self.records_lost = 0
        return lost

    def stats(self):
        return {"spooled_messages": self.messages, "spooled_records": self.records,
                "spool_octets": self.octets, "spool_budget": self.budget,
                "records_spooled": self.records_spooled, "spool_write_errors": self.write_errors,
                "spool_errors": self.errors, "spool_last_error": self.last_error}

    def close(self):
        """Removes the file; returns (messages, records) that were still in it."""
        left = (self.messages + self.messages_lost, self.records + self.records_lost)
        self.messages_lost = self.records_lost = 0
        try:
            os.close(self._fd)
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.messages = self.records = 0
        return left
