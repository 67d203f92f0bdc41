"""The control surface: one set of handlers (handlers.py) served over ubus
(ubus.py) and a local unix socket (server.py), and that socket's client
(client.py), which the CLI verbs (flowprobe/cli/) use."""

from flowprobe.control.handlers import ControlError, Handlers

__all__ = ["ControlError", "Handlers"]
