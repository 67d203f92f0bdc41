"""Metering settings: defaults, units and validation in one place.

The daemon's config, the CLI options and the tests all build a
MeterSettings; an invalid value raises SettingsError naming the option,
the value and what is allowed.
"""

from flowprobe import schema
from flowprobe.errors import OptionError
from flowprobe.frozen import Frozen, field_names
from flowprobe.schema import MAX_TIMEOUT_SECONDS, OVERFLOW_POLICIES  # noqa: F401  (their home)


class SettingsError(OptionError):
    """A meter setting out of range."""


class MeterSettings(Frozen):
    max_flows: int = 65536           # ~90 bytes each (table_size.py), reserved at start
    max_fragments: int = 4096
    idle_timeout: float = 15.0       # seconds; Cisco's and ipt-netflow's default
    active_timeout: float = 300.0    # long flows report every 5 min, nfcapd's bin width
    unanswered_timeout: float = 5.0  # scans and SYN floods must not hold the table
    tcp_end_grace: float = 2.0       # after FIN both ways or RST: late ACKs still join
    fragment_timeout: float = 30.0   # as Linux's ipfrag_time
    overflow_policy: str = "evict"
    bidirectional: bool = False
    hash_seed: int = 0               # 0: random; fixed only for reproducible tests
    macs: bool = False               # first MACs per direction: when a collector asks for them
    tunnels: str = "outer"           # frames handed in: a tunnel's packets, what they carry, both
    icmp_errors: bool = False        # ICMP errors counted on the flows they quote (8 B a slot)
    l2_flows: bool = False           # non-IP frames as layer-2 flows (cmeter/l2_flow.h)
    verify_checksums: bool = False   # IP/TCP/UDP/ICMP checksums counted (cmeter/checksum.h)
    max_flows_ipv6: object = "auto"  # IPv6 flows at once (36 B each); auto: half of max_flows

    def __post_init__(self):
        for name in ("max_flows", "max_fragments", "idle_timeout", "active_timeout",
                     "unanswered_timeout", "fragment_timeout", "tcp_end_grace",
                     "overflow_policy"):
            schema.check(SettingsError, name, getattr(self, name))
        if not isinstance(self.max_flows, int):   # 'auto' is the config's to resolve
            raise SettingsError("max_flows", self.max_flows,
                                "an integer (auto: the daemon's config, table_size.py)")
        if not isinstance(self.bidirectional, bool):
            raise SettingsError("bidirectional", self.bidirectional, "true or false")
        schema.check(SettingsError, "hash_seed", self.hash_seed)
        if not isinstance(self.macs, bool):
            raise SettingsError("macs", self.macs, "true or false")
        schema.check(SettingsError, "tunnels", self.tunnels)
        if not isinstance(self.icmp_errors, bool):
            raise SettingsError("icmp_errors", self.icmp_errors, "true or false")
        schema.check(SettingsError, "max_flows_ipv6", self.max_flows_ipv6)
        if self.max_flows_ipv6 != "auto":
            if self.max_flows_ipv6 > self.max_flows:
                raise SettingsError("max_flows_ipv6", self.max_flows_ipv6,
                                    f"at most max_flows ({self.max_flows}), or auto")
        for name in ("l2_flows", "verify_checksums"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(name, getattr(self, name), "true or false")

    @classmethod
    def option_names(cls):
        return field_names(cls)

