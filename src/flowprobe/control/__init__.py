"""The control surface: one set of handlers (handlers.py) served over ubus
(ubus.py) and a local unix socket (server.py), and the CLI verbs that talk to
that socket (commands.py)."""

from flowprobe.control.handlers import ControlError, Handlers

__all__ = ["ControlError", "Handlers"]
