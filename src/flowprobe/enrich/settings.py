"""Settings of the enrichment stage (UCI options in the main section),
checked like every other setting: an error names the option, the value and
what is allowed."""

from dataclasses import dataclass

from flowprobe import schema
from flowprobe.errors import OptionError


class EnrichSettingsError(OptionError):
    """An enrichment option out of range."""


@dataclass(frozen=True)
class EnrichSettings:
    routing: bool = False        # egress interface and next hop from the kernel's FIB
    route_cache: int = 4096      # FIB answers kept (~200 B each); the oldest leave when full
    route_wait: float = 0.5      # how long a record may wait for its lookup's answer

    def __post_init__(self):
        if not isinstance(self.routing, bool):
            raise EnrichSettingsError("routing", self.routing, "true or false")
        for name in ("route_cache", "route_wait"):
            schema.check(EnrichSettingsError, name, getattr(self, name))

    @property
    def active(self):
        """Whether records pass through the stage at all."""
        return self.routing
