"""The conntrack source's service imported only when a config turns it on
(`option source 'conntrack'` or 'both'): a daemon that meters captures
alone does not carry sources/conntrack.py in memory (as enrich/on_demand.py
does for the enrichment stage).  Once imported it stays: a reload that turns
the source off closes it through the service, as before."""


class ConntrackService:
    """The Probe's view of sources.conntrack.ConntrackService: the same
    verbs, forwarded once the service exists."""

    def __init__(self, probe):
        self.probe = probe
        self.service = None

    def _service(self):
        if self.service is None:
            from flowprobe.sources.conntrack import ConntrackService
            self.service = ConntrackService(self.probe)
        return self.service

    def before_reload(self, new_config, now_ms):
        if self.service is not None:
            self.service.before_reload(new_config, now_ms)

    def apply(self, config, now_ms):
        if self.service is not None or config.conntrack.tracks:
            self._service().apply(config, now_ms)

    def tick(self, now_ms):
        if self.service is not None:
            self.service.tick(now_ms)

    def close(self, now_ms):
        if self.service is not None:
            self.service.close(now_ms)

    def counters(self):
        return self.service.counters() if self.service is not None else {}

    def status(self, config, capture_counters):
        if self.service is None and not config.conntrack.tracks:
            return None   # what the service answers with the source off and never on
        return self._service().status(config, capture_counters)
