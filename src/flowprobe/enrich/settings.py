"""Settings of the enrichment stage (UCI options in the main section),
checked like every other setting: an error names the option, the value and
what is allowed."""

from flowprobe import schema
from flowprobe.errors import OptionError
from flowprobe.frozen import Frozen


class EnrichSettingsError(OptionError):
    """An enrichment option out of range."""


class EnrichSettings(Frozen):
    routing: bool = False        # egress interface and next hop from the kernel's FIB
    route_cache: int = 4096      # FIB answers kept (~150 B each); a full bucket gives one up
    route_wait: float = 0.5      # how long a record may wait for its lookup's answer
    devices: bool = True         # device names and MACs for addresses (flow list, status)
    lease_file: str = "/tmp/dhcp.leases"             # dnsmasq's (DHCPv4, and its DHCPv6)
    dhcpv6_lease_file: str = "/tmp/hosts/odhcpd"     # odhcpd's
    prefix_file: str = ""        # `prefix asn` lines: AS numbers and prefix lengths ("": off)
    max_prefixes: int = 262144   # ~48 B each, allocated at each load
    # not an option: on while a collector asks for MAC fields (config.build);
    # conntrack records then get them from the neighbour table
    macs: bool = False

    def __post_init__(self):
        for name in ("routing", "devices"):
            if not isinstance(getattr(self, name), bool):
                raise EnrichSettingsError(name, getattr(self, name), "true or false")
        for name in ("lease_file", "dhcpv6_lease_file"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
                raise EnrichSettingsError(name, value, "an absolute path")
        prefix_file = self.prefix_file
        if not isinstance(prefix_file, str) or "\0" in prefix_file or (
                prefix_file and not prefix_file.startswith("/")):
            raise EnrichSettingsError("prefix_file", prefix_file, "an absolute path, or empty")
        for name in ("route_cache", "route_wait", "max_prefixes"):
            schema.check(EnrichSettingsError, name, getattr(self, name))

    @property
    def active(self):
        """Whether records pass through the stage at all."""
        return self.routing or self.devices or bool(self.prefix_file)
