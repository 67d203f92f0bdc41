"""The enrichment stage imported only when a config turns it on: its tables
(netlink routes, device leases, prefixes) are modules a daemon without
routing, devices or prefix_file does not carry in memory."""


def apply(current, settings, deliver, clock):
    """stage.apply (the stage a config asks for, None for none)."""
    if current is None and not settings.active:
        return None
    from flowprobe.enrich import stage
    return stage.apply(current, settings, deliver, clock)
