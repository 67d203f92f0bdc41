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
"""

import os
import struct

ENTRY = struct.Struct("!II")   # message octets, records in it
COPY_CHUNK = 1 << 16


class SpoolError(OSError):
    pass


class Spool:
    def __init__(self, path, budget_bytes):
        self.path, self.budget = str(path), budget_bytes
        try:
            self._file = open(self.path, "w+b")   # truncates a previous run's spool
        except OSError as e:
            raise SpoolError(f"cannot create the spool {self.path}: {e.strerror}") from None
        self._read_at = self._write_at = 0
        self.messages = self.records = 0          # waiting in it now
        self.messages_spooled = self.records_spooled = 0
        self.write_errors = 0

    def __len__(self):
        return self.messages

    @property
    def octets(self):
        return self._write_at - self._read_at

    def push(self, data, records):
        """Appends a message; False when it does not fit the budget (or the
        write failed): the caller counts it as not sent."""
        size = ENTRY.size + len(data)
        if self._write_at + size > self.budget and self._read_at:
            self._compact()
        if self._write_at + size > self.budget:
            return False
        try:
            self._file.seek(self._write_at)
            self._file.write(ENTRY.pack(len(data), records))
            self._file.write(data)
            self._file.flush()
        except OSError:
            self.write_errors += 1
            return False
        self._write_at += ENTRY.size + len(data)
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
            self._file.seek(source)
            chunk = self._file.read(min(COPY_CHUNK, self._write_at - source))
            self._file.seek(target)
            self._file.write(chunk)
            source += len(chunk)
            target += len(chunk)
        self._file.truncate(target)
        self._file.flush()
        self._write_at, self._read_at = target, 0

    def pop(self):
        """(data, records) of the oldest message, or None."""
        if not self.messages:
            return None
        self._file.seek(self._read_at)
        length, records = ENTRY.unpack(self._file.read(ENTRY.size))
        data = self._file.read(length)
        self._read_at += ENTRY.size + length
        self.messages -= 1
        self.records -= records
        if not self.messages:  # all replayed: start the file over
            self._file.truncate(0)
            self._read_at = self._write_at = 0
        return data, records

    def stats(self):
        return {"spooled_messages": self.messages, "spooled_records": self.records,
                "spool_octets": self.octets, "spool_budget": self.budget,
                "records_spooled": self.records_spooled, "spool_write_errors": self.write_errors}

    def close(self):
        """Removes the file; returns (messages, records) that were still in it."""
        left = (self.messages, self.records)
        self._file.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.messages = self.records = 0
        return left
