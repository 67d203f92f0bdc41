"""The writing side of the store: segments, rollups and the budget, in
the store's own thread.

An INSERT costs SQLite 8-15 µs a record on a PC (bench/history_bench.py),
more than the meter spends on a record's packets; on the loop that would
be time taken from capture.  So the loop only copies batches (a memcpy) and
this thread writes them: SQLite releases the GIL while it works, and a
disk that stalls stalls this thread, never metering.

Every method but the constructor runs in the writer thread; segments()
and stats() are read from the loop under the lock.
"""

import errno
import logging
import os
import sqlite3
import threading

from flowprobe.store import rollups, rows, segments
from flowprobe.store.segments import HistoryError, Segment

log = logging.getLogger("flowprobe.history")

SEGMENT_SPAN_S = 3600          # a segment holds at most an hour of writes
SEGMENT_SHARE = 16             # ... and at most 1/16 of the budget
ROLLUP_SHARE = 4               # rollups.db: at most 1/4 of the budget
MIN_SEGMENT_BYTES = 64 * 1024
ESTIMATE_MARGIN = 2.0          # the WAL holds a flush's pages once more until checkpoint
FIRST_ESTIMATE_BYTES = 120     # bytes per record before a segment says its own
BUSY_TIMEOUT_MS = 2000
NAME_ATTEMPTS = 16             # names taken by something else are skipped, this many at most
FULL_DISK_SHARE = 0.8          # a full filesystem: the budget becomes this much of what is there


def _connect(path, mode="rw"):
    connection = sqlite3.connect(segments.sqlite_uri(path, mode), uri=True,
                                 isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


class StoreWriter:
    def __init__(self, directory, budget_bytes):
        self.directory, self.budget = directory, budget_bytes
        self.lock = threading.Lock()
        self.sealed, unsealed = segments.inventory(directory)
        self.current = None            # the open Segment, its connection below
        self._connection = None
        self._last_rowid = 0
        self._rows = rows.Rows()
        self.next_seq = max([s.seq for s in self.sealed + unsealed], default=0) + 1
        self.opened_at = 0.0
        self.bytes_per_record = FIRST_ESTIMATE_BYTES
        self.records_written = self.segments_deleted = 0
        self.write_errors = 0
        self.last_error = None
        self.rollups_path = os.path.join(directory, segments.ROLLUPS_FILE)
        self.rollups_size = 0
        self.unsealed = unsealed       # sealed by the thread's first write (they may be big)
        self.last_prune_s = 0.0
        self.budget_lowered = False    # the filesystem was full before history_kb

    # ---- what the loop reads ----

    def segments(self):
        """Every segment with records, oldest first (the open one last)."""
        with self.lock:
            found = list(self.sealed)
            if self.current and self._last_rowid:
                found.append(Segment(self.current.seq, self.current.path,
                                     self.current.first_ms, self.current.last_ms,
                                     self.current.size))
            return found

    def disk_bytes(self):
        with self.lock:
            return (sum(s.size for s in self.sealed) + self.rollups_size
                    + (self.current.size if self.current else 0))

    # ---- the writer thread ----

    def start(self):
        """Seals what a kill -9 left open and opens rollups.db."""
        for segment in self.unsealed:
            self._seal_left_over(segment)
        self.unsealed = []
        if not os.path.lexists(self.rollups_path):
            segments.create_file(self.rollups_path)
        segments.check_own_file(self.rollups_path)
        connection = _connect(self.rollups_path)
        try:
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")   # a new file only
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(rollups.SCHEMA)
        finally:
            connection.close()
        self.rollups_size = segments.file_size(self.rollups_path)
        self._enforce_budget(0)

    def _seal_left_over(self, segment):
        try:
            segments.check_own_file(segment.path)
            connection = _connect(segment.path)   # a hot journal or WAL is applied here
            try:
                first, last = connection.execute(
                    "SELECT min(start_ms), max(start_ms) FROM flows").fetchone()
                connection.execute("PRAGMA journal_mode = DELETE")
            finally:
                connection.close()
        except (sqlite3.Error, HistoryError) as e:
            log.warning("history: %s cannot be read (%s): removed", segment.path, e)
            segments.remove(segment.path)
            return
        if first is None:
            segments.remove(segment.path)
            return
        self._rename_sealed(segment, first, last)

    def _rename_sealed(self, segment, first, last):
        path = segments.sealed_segment_path(self.directory, segment.seq, first, last)
        os.rename(segment.path, path)
        with self.lock:
            self.sealed.append(Segment(segment.seq, path, first, last, segments.file_size(path)))
            self.sealed.sort(key=lambda s: s.seq)

    def write(self, chunks, count, interfaces, now_s):
        """Records (bytes chunks, count of them) into the open segment, the
        budget kept; returns how many could not be written."""
        not_written = 0
        for group, records in self._groups(chunks):
            not_written += self._write_group(group, records, interfaces, now_s)
        crowded = self.rollups_size > self.budget // ROLLUP_SHARE
        if (crowded or now_s - self.last_prune_s >= 60) and self._connection is not None:
            self.last_prune_s = now_s
            try:
                self._prune_rollups(now_s)
            except sqlite3.Error as e:
                self._failed(f"pruning {self.rollups_path}: {e}")
        self._enforce_budget(0)
        return not_written

    def _groups(self, chunks):
        """Chunks in groups that fit what is left of a segment's share."""
        group, records = [], 0
        for chunk in chunks:
            count = len(chunk) // rows.RECORD_SIZE
            if group and (records + count) * self.bytes_per_record > self._segment_cap() / 2:
                yield group, records
                group, records = [], 0
            group.append(chunk)
            records += count
        if group:
            yield group, records

    def _write_group(self, chunks, count, interfaces, now_s):
        estimate = count * self.bytes_per_record
        try:
            if self.current and (now_s - self.opened_at >= SEGMENT_SPAN_S
                                 or self.current.size + estimate >= self._segment_cap()):
                self.seal()
            if not self._enforce_budget(count) and self.current:
                self.seal()    # the open segment's records become the oldest to go
            if not self._enforce_budget(count):
                self._failed(f"history_kb {self.budget // 1024} is too small for a flush of "
                             f"{count} records")
                return count
            if self.current is None:
                self._open_new(now_s)
            self._insert(chunks, interfaces)
        except (sqlite3.Error, OSError) as e:
            self._failed(f"writing {self.current.path if self.current else self.directory}: "
                         f"{getattr(e, 'strerror', None) or e}")
            self._abandon_current()
            if _disk_full(e):
                self._lower_budget()
            return count
        self.records_written += count
        return 0

    def _lower_budget(self):
        """The filesystem is smaller than history_kb (or shared and full):
        what is on disk now, less a margin, becomes the budget, so the
        oldest segments make room and writing goes on."""
        lowered = int(self.disk_bytes() * FULL_DISK_SHARE)
        if lowered < self.budget:
            log.warning("history: %s is full at %d KB: keeping %d KB from now on (history_kb "
                        "%d)", self.directory, self.disk_bytes() // 1024, lowered // 1024,
                        self.budget // 1024)
            self.budget = lowered
            self.budget_lowered = True
        self._enforce_budget(0)

    def _failed(self, message):
        self.write_errors += 1
        if message != self.last_error:
            log.warning("history: %s", message)
        self.last_error = message

    def _segment_cap(self):
        return max(self.budget // SEGMENT_SHARE, MIN_SEGMENT_BYTES)

    def _open_new(self, now_s):
        for attempt in range(NAME_ATTEMPTS):
            seq = self.next_seq
            path = segments.open_segment_path(self.directory, seq)
            self.next_seq += 1     # a name that was taken is never tried again
            try:
                segments.create_file(path)
                break
            except HistoryError:   # something this daemon did not make: left alone
                if attempt == NAME_ATTEMPTS - 1:
                    raise
        connection = _connect(path)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA temp_store = MEMORY")   # rollups' staging tables
            connection.executescript(rows.SEGMENT_SCHEMA)
            connection.execute("ATTACH ? AS r", (segments.sqlite_uri(self.rollups_path),))
        except sqlite3.Error:   # a full disk already: nothing of it is kept
            connection.close()
            segments.remove(path)
            raise
        with self.lock:
            self.current = Segment(seq, path)
        self._connection, self._last_rowid = connection, 0
        self.opened_at = now_s

    def _insert(self, chunks, interfaces):
        connection = self._connection
        connection.execute("BEGIN")
        try:
            for chunk in chunks:
                self._rows.insert(connection, chunk)
            last = connection.execute("SELECT max(rowid) FROM flows").fetchone()[0] or 0
            first_ms, last_ms = connection.execute(
                "SELECT min(start_ms), max(start_ms) FROM flows WHERE rowid > ?",
                (self._last_rowid,)).fetchone()
            if last > self._last_rowid:
                rollups.add(connection, self._last_rowid, last)
            for table in ("main", "r"):
                connection.executemany(f"INSERT OR REPLACE INTO {table}.interfaces VALUES (?, ?)",
                                       interfaces.items())
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA r.wal_checkpoint(TRUNCATE)")
        size = segments.file_size(self.current.path)
        with self.lock:
            current = self.current
            if first_ms is not None:
                current.first_ms = first_ms if not self._last_rowid else min(current.first_ms,
                                                                             first_ms)
                current.last_ms = max(current.last_ms, last_ms)
            rows_now = last
            current.size = size
            self._last_rowid = last
            self.rollups_size = segments.file_size(self.rollups_path)
        if rows_now:
            self.bytes_per_record = max(size / rows_now, 16)

    def _prune_rollups(self, now_s):
        connection = self._connection
        if connection is None:
            return
        with self.lock:
            oldest = self.sealed[0].first_ms if self.sealed else (
                self.current.first_ms if self.current else now_s * 1000)
        self._in_transaction(lambda: rollups.prune(connection, now_s, oldest / 1000))
        while segments.file_size(self.rollups_path) > self.budget // ROLLUP_SHARE:
            removed = self._in_transaction(lambda: rollups.shrink(connection))
            # executescript steps the pragma to its end: execute() frees one page only
            connection.executescript("PRAGMA r.incremental_vacuum; "
                                     "PRAGMA r.wal_checkpoint(TRUNCATE);")
            if not removed:
                break
        with self.lock:
            self.rollups_size = segments.file_size(self.rollups_path)

    def _in_transaction(self, work):
        connection = self._connection
        connection.execute("BEGIN")
        try:
            result = work()
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    def _enforce_budget(self, incoming):
        """Oldest sealed segments go until what is on disk plus what comes
        fits; False when even without them it would not."""
        projected = int(incoming * self.bytes_per_record * ESTIMATE_MARGIN)
        while self.disk_bytes() + projected > self.budget and self.sealed:
            with self.lock:
                oldest = self.sealed.pop(0)
            segments.remove(oldest.path)
            self.segments_deleted += 1
            log.info("history: removed %s to stay within history_kb",
                     os.path.basename(oldest.path))
        return self.disk_bytes() + projected <= self.budget

    def seal(self):
        """The open segment closed and named by its time range (removed when
        empty).  If SQLite cannot finish it (a full disk), it stays under its
        open name, committed rows in its WAL: still counted, queried and
        deleted by the budget like the others, and sealed at the next start."""
        if self.current is None:
            return
        segment, connection = self.current, self._connection
        with self.lock:
            self.current, self._connection = None, None
        rows_in_it, self._last_rowid = self._last_rowid, 0
        try:
            try:
                connection.execute("DETACH r")
                connection.execute("PRAGMA journal_mode = DELETE")
            finally:
                connection.close()
        except sqlite3.Error as e:
            self._failed(f"sealing {segment.path}: {e}")
            if rows_in_it:
                segment.size = segments.file_size(segment.path)
                with self.lock:
                    self.sealed.append(segment)
                    self.sealed.sort(key=lambda s: s.seq)
            else:
                segments.remove(segment.path)
            return
        if not rows_in_it:
            segments.remove(segment.path)
        else:
            self._rename_sealed(segment, segment.first_ms, segment.last_ms)

    def _abandon_current(self):
        """After a failed write: the open segment is closed as it is (what it
        committed stays) and the next write starts a new one."""
        try:
            self.seal()
        except OSError as e:
            self._failed(f"sealing after a failed write: {e}")

    def close(self):
        try:
            self.seal()
        except (sqlite3.Error, OSError) as e:
            self._failed(f"closing the open segment: {e}")

    def stats(self):
        with self.lock:
            return {"segments": len(self.sealed) + (1 if self.current else 0),
                    "disk_bytes": (sum(s.size for s in self.sealed) + self.rollups_size
                                   + (self.current.size if self.current else 0)),
                    "budget_bytes": self.budget, "budget_lowered": self.budget_lowered,
                    "records_written": self.records_written,
                    "segments_deleted": self.segments_deleted,
                    "oldest_ms": self.sealed[0].first_ms if self.sealed else (
                        self.current.first_ms if self.current else None),
                    "write_errors": self.write_errors, "last_error": self.last_error}


def _disk_full(error):
    return isinstance(error, sqlite3.Error) and "full" in str(error) or (
        isinstance(error, OSError) and error.errno == errno.ENOSPC)
