"""The history store as a sink: records in from Sinks.deliver, out to disk
in batches by the store's writer thread.

The loop's part is a copy of each batch into a bounded queue
(QUEUE_RECORDS, ~3 MB of struct fp_record) and, at a tick, handing what
waits to the writer: at every history_flush seconds, or sooner once the
queue is half full.  While the writer is still busy with the previous
batch the queue fills; what does not fit is counted (records_not_written,
in status), never waited for.  A kill -9 loses what waited in the queue:
at most history_flush seconds of records.
"""

import logging
import queue
import threading
import time

from flowprobe.store import rows
from flowprobe.store.segments import prepare_dir
from flowprobe.store.writer import StoreWriter

log = logging.getLogger("flowprobe.history")

QUEUE_RECORDS = 16384
FINISH_TIMEOUT_S = 10.0


class HistorySink:
    def __init__(self, directory, budget_bytes, flush_s, interface_names, uid=None, gid=None):
        """Prepares history_dir and takes the inventory of its segments
        (names only); HistoryError when the directory cannot be used."""
        prepare_dir(directory, uid, gid)
        self.directory, self.flush_s = directory, flush_s
        self.interface_names = interface_names    # ifindex -> name, live
        self.writer = StoreWriter(directory, budget_bytes)
        self.chunks, self.queued = [], 0
        self.records_received = self.records_not_written = 0
        self.queue_overflows = 0
        self.next_flush = time.monotonic() + flush_s
        self._jobs = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._lost = 0                             # counted by the writer thread
        self._thread = None

    def start(self):
        """The writer thread: it seals what a kill -9 left open, then writes."""
        self._idle.clear()
        self._thread = threading.Thread(target=self._run, name="flowprobe-history", daemon=True)
        self._thread.start()
        self._jobs.put(("start",))

    # ---- the loop's side ----

    def deliver(self, batch, count, now_ms):
        self.records_received += count
        if self.queued + count > QUEUE_RECORDS:
            self.records_not_written += count
            self.queue_overflows += 1
            return
        self.chunks.append(rows.batch_bytes(batch, count))
        self.queued += count

    def tick(self, now_ms, force=False):
        """Hands what waits to the writer when it is due and the writer is free."""
        if not self.queued or not self._idle.is_set():
            return
        if not force and time.monotonic() < self.next_flush and self.queued < QUEUE_RECORDS // 2:
            return
        self.next_flush = time.monotonic() + self.flush_s
        chunks, count = self.chunks, self.queued
        self.chunks, self.queued = [], 0
        self._idle.clear()
        self._jobs.put(("write", chunks, count, dict(self.interface_names), now_ms / 1000))

    def finish(self, timeout_s=FINISH_TIMEOUT_S):
        """What waits is written and the open segment sealed, within timeout_s;
        what could not be is counted."""
        if self._thread is None:
            self.records_not_written += self.queued
            self.chunks, self.queued = [], 0
            return
        deadline = time.monotonic() + timeout_s
        if self._idle.wait(timeout_s):
            self.tick(int(time.time() * 1000), force=True)
        self._jobs.put(("close",))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("history: the writer did not finish within %g s", timeout_s)
        self.records_not_written += self.queued
        self.chunks, self.queued = [], 0
        self._thread = None

    def segments(self):
        return self.writer.segments()

    def stats(self):
        return dict(self.writer.stats(), directory=self.directory,
                    records_received=self.records_received,
                    records_queued=self.queued,
                    records_not_written=self.records_not_written + self._lost,
                    queue_overflows=self.queue_overflows)

    # ---- the writer thread ----

    def _run(self):
        while True:
            job = self._jobs.get()
            try:
                if job[0] == "start":
                    self.writer.start()
                elif job[0] == "write":
                    self._lost += self.writer.write(*job[1:])
                else:
                    self.writer.close()
                    return
            except Exception as e:   # a bug or an I/O error: counted, and the thread goes on
                self.writer.write_errors += 1
                self.writer.last_error = str(e)
                log.exception("history: %s failed", job[0])
                if job[0] == "write":
                    self._lost += job[2]
                elif job[0] == "close":
                    return
            finally:
                self._idle.set()
