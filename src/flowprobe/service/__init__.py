"""The daemon's wiring: the loop (loop.py), what leaves the meter (sinks.py),
the meter across reloads (metering.py), a reload as a plan checked before it
is applied (reload.py), and what `status` shows (status.py).  daemon.py
builds them from the config and runs them."""
