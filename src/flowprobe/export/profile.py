"""A collector profile: what one collector gets (protocol, address,
transport, field list, uniflow or biflow, observation domain, template
refresh), checked.  Apart from the exporter (collectors.py), so that reading
the configuration does not import the encoders and transports.
"""

from flowprobe import schema
from flowprobe.errors import OptionError
from flowprobe.export import collector_url
from flowprobe.export.fields import DEFAULT_FIELDS, ELEMENTS, REVERSE_FIELDS, is_reverse
from flowprobe.frozen import Frozen
from flowprobe.schema import PROTOCOLS

DEFAULT_PORTS = {"ipfix": 4739, "netflow9": 2055, "netflow5": 2055, "sflow": 6343}


class ProfileError(OptionError):
    """A collector profile option out of range."""


class CollectorProfile(Frozen):
    host: str
    port: int = 0                       # 0: the protocol's usual port
    protocol: str = "ipfix"
    transport: str = "udp"
    fields: tuple = ()                  # IPFIX element names; empty: the standard record
    biflow: bool = False
    observation_domain: int = 0         # v9 source id, v5 engine id
    template_refresh_seconds: int = 60
    template_refresh_packets: int = 20
    # exporting-process statistics (options data): at start and at the end,
    # and every stats_interval seconds if set. nfdump 1.7 does not count
    # options records in IPFIX sequence checks, so each periodic one shows
    # there as a "sequence failure"; hence off unless asked for.
    stats_interval: int = 0
    mtu: int = 1400
    source_address: str = ""
    group: str = ""
    queue_limit: int = 256
    spool_kb: int = 0                   # on-disk overflow of the queue (export/spool.py); 0: off
    counter_interval: int = 20          # sFlow: interface counter samples every N s; 0: off
    name: str = ""                       # the section's: not part of what a profile is
    _not_compared = ("name",)

    def __post_init__(self):
        def check(option, ok, allowed):
            if not ok:
                raise ProfileError(option, getattr(self, option), allowed)

        schema.check(ProfileError, "protocol", self.protocol)
        schema.check(ProfileError, "transport", self.transport)
        check("transport", self.transport == "udp" or self.protocol == "ipfix",
              "udp (tcp is for ipfix only)")
        check("host", isinstance(self.host, str) and self.host != "", "an address or host name")
        schema.check(ProfileError, "port", self.port)
        check("biflow", isinstance(self.biflow, bool), "true or false")
        check("biflow", not self.biflow or self.protocol == "ipfix",
              "false (RFC 5103 biflows are IPFIX only)")
        for name in ("observation_domain", "template_refresh_seconds",
                     "template_refresh_packets", "stats_interval", "mtu", "queue_limit",
                     "spool_kb", "counter_interval"):
            schema.check(ProfileError, name, getattr(self, name))
        if self.protocol == "sflow":   # packet samples to every collector, no flow records
            check("fields", not self.fields, "none (sFlow sends packet headers, not flow records)")
            check("group", not self.group, "none (every sFlow collector gets every sample)")
        if self.fields and self.protocol != "sflow":
            check("fields", self.protocol != "netflow5", "none (the NetFlow v5 record is fixed)")
            for name in self.fields:
                if name not in ELEMENTS:
                    raise ProfileError("fields", name, "names from: " + " ".join(sorted(ELEMENTS)))
                if self.protocol == "netflow9" and ELEMENTS[name].v9_id is None:
                    raise ProfileError("fields", name, "elements NetFlow v9 can carry")
                if is_reverse(name) and not self.biflow:
                    raise ProfileError("fields", name, "reverse elements with biflow only")

    @property
    def effective_port(self):
        return self.port or DEFAULT_PORTS[self.protocol]

    @property
    def field_names(self):
        if self.fields:
            return tuple(self.fields)
        names = DEFAULT_FIELDS + (REVERSE_FIELDS if self.biflow else ())
        if self.protocol == "netflow9":
            names = tuple(n for n in names if ELEMENTS[n].v9_id is not None)
        return names

    @property
    def label(self):
        return self.name or f"{self.protocol}://{self.host}:{self.effective_port}"



URL_OPTIONS = {
    "transport": ("transport", str),
    "fields": ("fields", lambda v: tuple(x for x in v.replace(",", " ").split() if x)),
    "biflow": ("biflow", lambda v: v.lower() in ("1", "true", "yes", "on")),
    "domain": ("observation_domain", int),
    "refresh": ("template_refresh_seconds", int),
    "refresh_packets": ("template_refresh_packets", int),
    "stats": ("stats_interval", int),
    "mtu": ("mtu", int),
    "source": ("source_address", str),
    "group": ("group", str),
    "queue": ("queue_limit", int),
    "name": ("name", str),
}


def profile_from_url(url):
    """ipfix://HOST:PORT?biflow=1&transport=tcp&fields=a,b&domain=5&group=g ..."""
    try:
        parts = collector_url.split(url)
    except ValueError as e:
        raise ProfileError("host", url, f"an address or host name ({e})") from None
    if parts.scheme not in PROTOCOLS:
        raise ProfileError("protocol", parts.scheme or url,
                           "ipfix://, netflow9://, netflow5:// or sflow://")
    try:
        port = parts.port or 0
    except ValueError:
        raise ProfileError("port", parts.netloc, "1 to 65535") from None
    options = {}
    for key, values in collector_url.parse_query(parts.query).items():
        if key not in URL_OPTIONS:
            raise ProfileError(key, values[-1], "options: " + ", ".join(sorted(URL_OPTIONS)))
        option, convert = URL_OPTIONS[key]
        try:
            options[option] = convert(values[-1])
        except ValueError:
            raise ProfileError(option, values[-1], "a number") from None
    return CollectorProfile(host=parts.hostname or "", port=port, protocol=parts.scheme, **options)
