"""The enrichment stage: what the router knows about a flow beyond its
packets (the FIB's egress and next hop; the device behind an address),
filled in between the meter and the sinks."""
