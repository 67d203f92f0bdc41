"""The history store as the daemon sees it: on or off by the config (option
history), a sink while on, queries, anomalies and its part of status.

A history_dir that cannot be used is an error in status and the log
naming the option; metering and export go on without the store.
"""

import logging
import time

# the store's own modules (sqlite3 with them) are imported when the store is
# turned on or asked: a daemon without history does not carry them
from flowprobe.store import anomaly

log = logging.getLogger("flowprobe.history")

# a 5-minute point is read once its flows can all have ended and been
# written: the meter's default active timeout (300 s) and a flush later
SETTLE_S = 600
REPLAY_S = 3 * 86400          # at start, the last three days train the models (two to learn)
SHOWN_ANOMALIES = 10


class HistoryService:
    def __init__(self, interface_names):
        self.interface_names = interface_names
        self.sink = None
        self.settings = None
        self.error = None
        self.detector = anomaly.Detector()
        self.next_point_s = None      # the next 5-minute point to read
        self.started = False

    def apply(self, config):
        """Opens, reopens (other options) or closes the store; a running
        store is finished first (what waits is written)."""
        settings = (config.history, config.history_dir, config.history_kb, config.history_flush,
                    config.user)
        if settings == self.settings:
            return
        if self.sink:
            self.sink.finish()
            self.sink = None
        self.settings, self.error = settings, None
        if not config.history:
            return
        from flowprobe.store.segments import HistoryError
        from flowprobe.store.sink import HistorySink
        uid = gid = None
        if config.user:
            from flowprobe.privileges import PrivilegeError, account
            try:
                owner = account(config.user)
                uid, gid = owner.uid, owner.gid
            except PrivilegeError:
                pass     # the daemon's start says so
        try:
            self.sink = HistorySink(config.history_dir, config.history_kb * 1024,
                                    config.history_flush, self.interface_names, uid, gid)
        except (HistoryError, OSError) as e:
            self.error = f"flowprobe.main.history_dir: {e}"
            log.error("%s; running without the history store", self.error)
            return
        if self.started:
            self.sink.start()

    def start(self):
        """The writer starts once the daemon is what it stays (after the
        privilege drop): its files belong to the daemon's user."""
        self.started = True
        if self.sink:
            self.sink.start()

    # ---- the sink ----

    def deliver(self, batch, count, now_ms):
        if self.sink:
            self.sink.deliver(batch, count, now_ms)

    def tick(self, now_ms):
        if not self.sink:
            return
        self.sink.tick(now_ms)
        self._read_points(now_ms / 1000)

    def finish(self):
        if self.sink:
            self.sink.finish()

    # ---- queries and anomalies ----

    def query(self, spec, now_ms, deadline_s=None):
        from flowprobe.store import query
        if deadline_s is None:
            deadline_s = query.DEADLINE_S
        if not self.sink:
            raise query.QueryError(self.error or "query: the history store is off "
                                                 "(option history '1' turns it on)")
        return query.run(query.Query(spec, now_ms), self.sink.segments(), deadline_s,
                         self.sink.writer.rollups_path)

    def _read_points(self, now_s):
        """Feeds the 5-minute points that have settled to the detector."""
        step = anomaly.STEP_S
        last_settled = int(now_s - SETTLE_S) // step * step - step
        if self.next_point_s is None:
            self.next_point_s = last_settled - REPLAY_S
        if self.next_point_s > last_settled:
            return
        import sqlite3

        from flowprobe.store import segments
        path = self.sink.writer.rollups_path
        try:
            connection = sqlite3.connect(segments.sqlite_uri(path, "ro"), uri=True)
        except sqlite3.Error:
            return
        try:
            rows = connection.execute(
                "SELECT bucket / ? * ?, coalesce(i.name, s.ifindex), sum(octets) FROM series s "
                "LEFT JOIN interfaces i USING (ifindex) WHERE resolution = 60 AND bucket >= ? "
                "AND bucket < ? GROUP BY 1, 2 ORDER BY 1",
                (step, step, self.next_point_s, last_settled + step)).fetchall()
        except sqlite3.Error:
            return   # not written yet
        finally:
            connection.close()
        self.feed(rows, self.next_point_s, last_settled)
        self.next_point_s = last_settled + step

    def feed(self, rows, first_s, last_s):
        """(bucket, series, octets) rows: every known series gets a point at
        every step from first_s to last_s (0 where nothing was counted)."""
        values = {(bucket, str(name)): octets for bucket, name, octets in rows}
        names = {name for _, name in values} | set(self.detector.models)
        for bucket in range(first_s, last_s + 1, anomaly.STEP_S):
            for name in sorted(names):
                found = self.detector.feed(name, bucket, values.get((bucket, name), 0))
                if found and found.end_s == found.start_s + (anomaly.CONSECUTIVE - 1) * \
                        anomaly.STEP_S:
                    log.warning("history: anomaly on %s since %s: %d bytes per 5 minutes, "
                                "%d expected", name, time.strftime(
                                    "%Y-%m-%d %H:%M UTC", time.gmtime(found.start_s)),
                                found.peak, found.expected)

    def status(self):
        if not self.sink:
            return {"enabled": False, "error": self.error} if self.settings and \
                self.settings[0] else None
        models = self.detector.models
        anomalies = [{"series": a.series, "start_ms": a.start_s * 1000, "end_ms": a.end_s * 1000,
                      "peak_bytes": int(a.peak), "expected_bytes": int(a.expected),
                      "ongoing": models[a.series].anomalous
                      and a.end_s == self.detector.last_point_s.get(a.series)}
                     for a in self.detector.anomalies[-SHOWN_ANOMALIES:]]
        return dict(self.sink.stats(), enabled=True, error=self.error, anomalies=anomalies)
