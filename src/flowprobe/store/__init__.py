"""The flow history store: a sink beside the exporter.

    rows.py      struct fp_record batches → rows of a segment (no per-field Python)
    segments.py  the files under history_dir: safe creation, inventory, budget
    rollups.py   per-minute, per-hour and per-day series, kept longer than records
    writer.py    the store's thread: inserts, rollups, segments sealed and deleted
    sink.py      the sink: a bounded queue, batches handed to the writer at the tick
    query.py     queries on any combination of fields, across segments
    anomaly.py   Holt-Winters forecasts with a deviation band on the 5-minute series
    service.py   the store as the daemon sees it: on/off by config, status, queries
"""
