"""Settings of the conntrack metering source (UCI options in the main
section), checked like every other setting: an error names the option, the
value and what is allowed."""

from dataclasses import dataclass

from flowprobe.errors import OptionError, check_int, check_seconds

SOURCES = ("capture", "conntrack", "both")
MAX_SECONDS = 7 * 24 * 3600


class ConntrackSettingsError(OptionError):
    """A conntrack option out of range."""


@dataclass(frozen=True)
class ConntrackSettings:
    source: str = "capture"               # packet capture, conntrack, or both side by side
    conntrack_max_connections: int = 16384  # OpenWrt's usual nf_conntrack_max; ~200 B each
    conntrack_dump_interval: float = 30.0   # counters read for active timeouts this often
    conntrack_vanish_grace: float = 5.0     # a connection missing from a dump waits for DESTROY
    conntrack_buffer_kb: int = 1024         # event socket buffer: bursts of connections

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ConntrackSettingsError("source", self.source, ", ".join(SOURCES))
        _check_int("conntrack_max_connections", self.conntrack_max_connections, 1, 1 << 24)
        _check_seconds("conntrack_dump_interval", self.conntrack_dump_interval, 1.0)
        _check_seconds("conntrack_vanish_grace", self.conntrack_vanish_grace, 0.0)
        _check_int("conntrack_buffer_kb", self.conntrack_buffer_kb, 0, 1 << 20)

    @property
    def captures(self):
        return self.source in ("capture", "both")

    @property
    def tracks(self):
        return self.source in ("conntrack", "both")


def _check_int(option, value, low, high):
    check_int(ConntrackSettingsError, option, value, low, high)


def _check_seconds(option, value, low):
    check_seconds(ConntrackSettingsError, option, value, low, MAX_SECONDS)
