"""Networks and AS numbers: a `prefix asn` file (option prefix_file) in the
C longest-prefix-match table (cmeter/prefix_table.c), loaded in a thread of
its own (the C load holds no lock Python needs) and swapped in at the
loop's tick once whole: records never see half a table, and a file that
does not load leaves the previous table in use, its error in status."""

import logging
import os
import threading

from flowprobe._cmeter_ffi import ffi, lib

log = logging.getLogger("flowprobe")


class PrefixTable:
    def __init__(self, path, max_prefixes):
        self.path, self.max_prefixes = path, max_prefixes
        self.table = None           # the one in use (cdata, freed when dropped)
        self.error = None
        self.loads = 0
        self._stamp = None
        self._loading = None        # the thread, while one runs
        self._loaded = None         # (table or None, error) once it is done
        self.refresh()

    def refresh(self):
        """At the tick: a finished load swapped in; a changed file loaded again."""
        if self._loading and not self._loading.is_alive():
            self._loading = None
            table, error = self._loaded
            if table is None:
                log.error("flowprobe.main.prefix_file: %s: %s%s", self.path, error,
                          "; the previous table stays" if self.table else "")
                self.error = error
            else:
                self.table, self.error = table, None
                self.loads += 1
                log.info("prefix_file %s: %d prefixes", self.path,
                         lib.fp_prefix_table_prefixes(table))
        if self._loading:
            return
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError as e:
            stamp, self.error = None, f"cannot read it: {e.strerror}"
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            self._loading = threading.Thread(target=self._load, name="prefix-table", daemon=True)
            self._loading.start()

    def _load(self):
        error = ffi.new("char[]", lib.FP_ERROR_SIZE)
        table = lib.fp_prefix_table_load(self.path.encode(), self.max_prefixes, error)
        if table == ffi.NULL:
            self._loaded = (None, ffi.string(error).decode(errors="replace"))
        else:
            self._loaded = (ffi.gc(table, lib.fp_prefix_table_free), None)

    def wait(self, timeout=None):
        """For tests: a load of the file as it is now, finished and swapped in."""
        self.refresh()
        if self._loading:
            self._loading.join(timeout)
        self.refresh()

    def apply(self, records, count):
        if self.table is not None:
            lib.fp_records_prefixes(self.table, records, count)

    def stats(self):
        table = self.table
        return {"prefix_file": self.path, "prefix_error": self.error,
                "prefixes": lib.fp_prefix_table_prefixes(table) if table else 0,
                "prefix_memory_bytes": lib.fp_prefix_table_memory_bytes(table) if table else 0}
