"""What every option may hold, once: its range or its choices, and the words
an error uses for them.

The daemon's settings (settings.py, sources/conntrack_settings.py, config.py,
export/collectors.py) check their fields here; LuCI's form reads the same
table, generated into luci-app-flowprobe's flowprobe/schema.js together with
the option names and the defaults (tools/gen_schema.py; a test keeps it
current).  Keyed by field (the settings' attribute); the UCI option names
that map to each field are config.py's.  Checks that are logic, not ranges
(host names, device names, user names, field lists), stay with their code.
"""

from flowprobe.frozen import Frozen

MAX_TIMEOUT_SECONDS = 7 * 24 * 3600   # flow durations are kept in 32-bit milliseconds


class Integer(Frozen):
    low: int
    high: int
    allowed: str = ""
    words: tuple = ()   # words allowed besides the numbers (max_flows 'auto')

    def __post_init__(self):
        if not self.allowed:
            words = "".join(f" or {word}" for word in self.words)
            object.__setattr__(self, "allowed", f"an integer from {self.low} to {self.high}"
                                                f"{words}")

    def holds(self, value):
        if isinstance(value, str):
            return value in self.words
        return (isinstance(value, int) and not isinstance(value, bool)
                and self.low <= value <= self.high)


class Seconds(Frozen):
    low: float
    high: float = MAX_TIMEOUT_SECONDS

    @property
    def allowed(self):
        return f"seconds from {self.low:g} to {self.high}"

    def holds(self, value):
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and self.low <= value <= self.high)


class Choice(Frozen):
    values: tuple
    separator: str = ", "

    @property
    def allowed(self):
        return self.separator.join(self.values)

    def holds(self, value):
        return value in self.values


OVERFLOW_POLICIES = ("evict", "refuse")
DIRECTIONS = ("in", "out", "both")
TUNNELS = ("outer", "inner", "both")   # a tunnel's packets, the packets inside it, or both
LOG_LEVELS = ("debug", "info", "warning", "error")
SOURCES = ("capture", "conntrack", "both")
PROTOCOLS = ("ipfix", "netflow9", "netflow5", "sflow")
SAMPLING_ALGORITHMS = ("random", "deterministic")
TRANSPORTS = ("udp", "tcp")

FIELDS = {
    # the meter (settings.MeterSettings)
    "max_flows": Integer(1, 1 << 24, words=("auto",)),   # auto: table_size.py
    "max_flows_ipv6": Integer(1, 1 << 24, words=("auto",)),   # auto: half of max_flows
    "max_fragments": Integer(1, 1 << 20),
    "idle_timeout": Seconds(0.001),
    "active_timeout": Seconds(0.001),
    "unanswered_timeout": Seconds(0.001),
    "fragment_timeout": Seconds(0.001),
    "tcp_end_grace": Seconds(0.0),
    "overflow_policy": Choice(OVERFLOW_POLICIES, " or "),
    "hash_seed": Integer(0, (1 << 64) - 1),
    # a capture (config.InterfaceConfig); below 64 bytes the headers the meter
    # reads no longer fit, 262144 is libpcap's maximum
    "direction": Choice(DIRECTIONS),
    "snaplen": Integer(64, 262144, "bytes from 64 to 262144"),
    "tunnels": Choice(TUNNELS),
    "buffer_kb": Integer(0, 1 << 20, "0 (libpcap's default) or kilobytes up to 1048576"),
    # 1 in N packets metered (cmeter/sampling.c); written '1:N' in UCI
    "sampling": Integer(1, (1 << 24) - 1, "1:N with N from 1 (every packet) to 16777215"),
    "sampling_algorithm": Choice(SAMPLING_ALGORITHMS, " or "),
    # the service (config.Config)
    "log_level": Choice(LOG_LEVELS),
    # the conntrack source (conntrack_settings.ConntrackSettings)
    "source": Choice(SOURCES),
    "conntrack_max_connections": Integer(1, 1 << 24),
    "conntrack_dump_interval": Seconds(1.0),
    "conntrack_vanish_grace": Seconds(0.0),
    "conntrack_buffer_kb": Integer(0, 1 << 20),
    # a collector (export.collectors.CollectorProfile)
    "protocol": Choice(PROTOCOLS, " or "),
    "transport": Choice(TRANSPORTS, " or "),
    "port": Integer(0, 65535, "1 to 65535"),
    "observation_domain": Integer(0, 2**32 - 1, "0 to 4294967295"),
    "template_refresh_seconds": Integer(1, 86400, "1 to 86400"),
    "template_refresh_packets": Integer(1, 100000, "1 to 100000"),
    "stats_interval": Integer(0, 86400, "0 (off) to 86400"),
    "mtu": Integer(256, 65000, "256 to 65000"),
    "queue_limit": Integer(1, 1_000_000, "1 to 1000000"),
    "spool_kb": Integer(0, 4_194_304, "0 (off) to 4194304"),
    # the enrichment stage (enrich.settings.EnrichSettings)
    "route_cache": Integer(16, 1 << 20),
    "route_wait": Seconds(0.0, 10),
    "max_prefixes": Integer(1, 1 << 24),
    # the history store (config.Config); below 256 KB the rollups and one
    # segment no longer fit beside each other
    "history_kb": Integer(256, 64 * 1024 * 1024, "kilobytes from 256 to 67108864"),
    "history_flush": Seconds(1.0, 300.0),
    # sFlow: generic interface counters every counter_interval seconds
    "counter_interval": Integer(0, 3600, "0 (off) to 3600"),
}


def check(error, field, value):
    """Raises error(field, value, allowed) unless value is what field may hold."""
    rule = FIELDS[field]
    if not rule.holds(value):
        raise error(field, value, rule.allowed)
