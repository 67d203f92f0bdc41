"""Metering settings: defaults, units and validation in one place.

The daemon's config, the CLI options and the tests all build a
MeterSettings; an invalid value raises SettingsError naming the option,
the value and what is allowed.
"""

from dataclasses import dataclass, fields

from flowprobe.errors import OptionError, check_int, check_seconds

OVERFLOW_POLICIES = ("evict", "refuse")
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600  # flow durations are kept in 32-bit milliseconds


class SettingsError(OptionError):
    """A meter setting out of range."""


@dataclass(frozen=True)
class MeterSettings:
    max_flows: int = 65536           # ~100 bytes each, committed at start
    max_fragments: int = 4096
    idle_timeout: float = 15.0       # seconds; Cisco's and ipt-netflow's default
    active_timeout: float = 300.0    # long flows report every 5 min, nfcapd's bin width
    unanswered_timeout: float = 5.0  # scans and SYN floods must not hold the table
    tcp_end_grace: float = 2.0       # after FIN both ways or RST: late ACKs still join
    fragment_timeout: float = 30.0   # as Linux's ipfrag_time
    overflow_policy: str = "evict"
    bidirectional: bool = False
    hash_seed: int = 0               # 0: random; fixed only for reproducible tests

    def __post_init__(self):
        _check_int("max_flows", self.max_flows, 1, 1 << 24)
        _check_int("max_fragments", self.max_fragments, 1, 1 << 20)
        for name in ("idle_timeout", "active_timeout", "unanswered_timeout", "fragment_timeout"):
            _check_seconds(name, getattr(self, name), 0.001)
        _check_seconds("tcp_end_grace", self.tcp_end_grace, 0.0)
        if self.overflow_policy not in OVERFLOW_POLICIES:
            raise SettingsError("overflow_policy", self.overflow_policy,
                                " or ".join(OVERFLOW_POLICIES))
        if not isinstance(self.bidirectional, bool):
            raise SettingsError("bidirectional", self.bidirectional, "true or false")
        _check_int("hash_seed", self.hash_seed, 0, (1 << 64) - 1)

    @classmethod
    def option_names(cls):
        return [f.name for f in fields(cls)]


def _check_int(option, value, low, high):
    check_int(SettingsError, option, value, low, high)


def _check_seconds(option, value, low):
    check_seconds(SettingsError, option, value, low, MAX_TIMEOUT_SECONDS)
