"""Settings of the conntrack metering source (UCI options in the main
section), checked like every other setting: an error names the option, the
value and what is allowed."""

from flowprobe import schema
from flowprobe.errors import OptionError
from flowprobe.frozen import Frozen
from flowprobe.schema import SOURCES  # noqa: F401  (its home)


class ConntrackSettingsError(OptionError):
    """A conntrack option out of range."""


class ConntrackSettings(Frozen):
    source: str = "capture"               # packet capture, conntrack, or both side by side
    conntrack_max_connections: int = 16384  # OpenWrt's usual nf_conntrack_max; ~200 B each
    conntrack_dump_interval: float = 30.0   # counters read for active timeouts this often
    conntrack_vanish_grace: float = 5.0     # a connection missing from a dump waits for DESTROY
    conntrack_buffer_kb: int = 1024         # event socket buffer: bursts of connections

    def __post_init__(self):
        for name in ("source", "conntrack_max_connections", "conntrack_dump_interval",
                     "conntrack_vanish_grace", "conntrack_buffer_kb"):
            schema.check(ConntrackSettingsError, name, getattr(self, name))

    @property
    def captures(self):
        return self.source in ("capture", "both")

    @property
    def tracks(self):
        return self.source in ("conntrack", "both")

