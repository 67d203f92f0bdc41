"""The control methods, one set for every transport (ubus, the unix socket).

Arguments are checked strictly: an unknown key or a value of the wrong type is
a ControlError naming it, never silently ignored, so that a typo in a filter
cannot turn `expire` into "expire everything".
"""


# IANA protocol numbers by the names operators type
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "sctp": 132,
             "udplite": 136}
SORT_KEYS = ("bytes", "packets", "age")
DEFAULT_LIMIT = 100
# a reply's cost bounds how long the loop is away from capture: 1000 flows
# of a 150 000-flow table cost about 50 ms to select, build and encode
MAX_LIMIT = 1000
FILTER_KEYS = ("address", "port", "protocol", "interface")


class ControlError(Exception):
    """A message the caller shows as is."""


class FlowFilter:
    """address (network), port, protocol, ifindex; None matches all. The core
    does the matching (fp_flow_filter), so `flows` with a filter lists what
    `expire` with the same filter ends."""

    def __init__(self, network=None, port=None, protocol=None, ifindex=None):
        self.network, self.port, self.protocol, self.ifindex = network, port, protocol, ifindex

    def meter_query(self):
        """Keyword arguments of Meter.snapshot and Meter.expire_matching."""
        arguments = {"protocol": self.protocol or 0, "port": self.port or 0,
                     "ifindex": self.ifindex or 0}
        if self.network is not None:
            arguments["address"] = str(self.network)
            arguments["prefix_length"] = self.network.prefixlen
        return arguments


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(method, args, allowed):
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise ControlError(f"{method}: arguments must be a JSON object, "
                           f"got {type(args).__name__}")
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "none"
        raise ControlError(f"{method}: unknown argument {', '.join(map(repr, unknown))} "
                           f"(allowed: {allowed_text})")
    return args


class Handlers:
    METHODS = ("status", "flows", "expire", "reload", "query")

    def __init__(self, probe):
        self.probe = probe

    def call(self, method, args=None):
        """Runs one method; returns its reply (a JSON object), or raises
        ControlError with a message for the caller."""
        if method not in self.METHODS:
            raise ControlError(f"unknown method {method!r} (methods: {', '.join(self.METHODS)})")
        return getattr(self, method)(args)

    # ---- methods ----

    def status(self, args):
        _check_keys("status", args, ())
        return self.probe.status()

    def flows(self, args):
        args = _check_keys("flows", args, FILTER_KEYS + ("sort", "limit"))
        flow_filter = self._filter("flows", args)
        sort = args.get("sort", "bytes")
        if sort not in SORT_KEYS:
            raise ControlError(f"flows: sort must be one of {', '.join(SORT_KEYS)}, "
                               f"got {sort!r}")
        limit = args.get("limit", DEFAULT_LIMIT)
        if not _is_integer(limit) or not 1 <= limit <= MAX_LIMIT:
            raise ControlError(f"flows: limit must be an integer 1..{MAX_LIMIT}, got {limit!r}")

        active = self.probe.meter.counters()["flows_active"]
        # biggest first, ties older first (by age: oldest first): selected in C
        top, matched = self.probe.meter.top(sort, limit, **flow_filter.meter_query())
        now_ms = self.probe.now_ms()
        names = {}
        flows = []
        for flow in top:
            ifindex = flow["ifindex"]
            if ifindex not in names:
                names[ifindex] = self.probe.interface_name(ifindex) if ifindex else None
            flows.append(dict(flow, interface=names[ifindex],
                              age_ms=max(0, now_ms - flow["flow_start_ms"])))
        devices = getattr(self.probe, "devices", None)
        if devices:   # which device each address is (enrich/devices.py)
            devices.annotate(flows)
        return {"flows": flows, "matched": matched, "active": active}

    def expire(self, args):
        args = _check_keys("expire", args, FILTER_KEYS)
        flow_filter = self._filter("expire", args)
        return {"expired": self.probe.meter.expire_matching(**flow_filter.meter_query())}

    def reload(self, args):
        _check_keys("reload", args, ())
        return self.probe.reload()

    def query(self, args):
        """The history store's records and sums (store/query.py says what
        a query may hold); the query is the arguments object itself."""
        from flowprobe.store.query import QueryError
        if isinstance(args, dict) and list(args) == ["query"]:
            # as ubus passes it (one string argument holding the JSON): rpcd forwards it so
            from flowprobe.control.ubus import query_argument
            args = query_argument(args)
        history = getattr(self.probe, "history", None)
        if history is None:
            raise ControlError("query: this daemon keeps no history store")
        try:
            return history.query(args or {}, self.probe.now_ms())
        except QueryError as e:
            raise ControlError(str(e)) from None

    # ---- arguments ----

    def _filter(self, method, args):
        network = port = protocol = ifindex = None
        if "address" in args:
            address = args["address"]
            if not isinstance(address, str):
                raise ControlError(f"{method}: address must be an IP address or prefix "
                                   f"(a string), got {address!r}")
            import ipaddress  # a query's filter: not kept from the start on
            try:
                network = ipaddress.ip_network(address.strip(), strict=False)
            except ValueError:
                raise ControlError(f"{method}: address {address!r} is not an IP address "
                                   f"or prefix") from None
        if "port" in args:
            port = args["port"]
            # 0 is the core's "any port"; ICMP type/code ride in dst_port
            if not _is_integer(port) or not 1 <= port <= 65535:
                raise ControlError(f"{method}: port must be an integer 1..65535, got {port!r}")
        if "protocol" in args:
            protocol = _protocol(method, args["protocol"])
        if "interface" in args:
            name = args["interface"]
            if not isinstance(name, str) or not name:
                raise ControlError(f"{method}: interface must be an interface name, "
                                   f"got {name!r}")
            ifindex = self.probe.interface_index(name)
            if not ifindex:
                raise ControlError(f"{method}: no interface {name!r}")
        return FlowFilter(network, port, protocol, ifindex)


def _protocol(method, value):
    if isinstance(value, str):
        number = PROTOCOLS.get(value.strip().lower())
        if number is None:
            raise ControlError(f"{method}: unknown protocol {value!r} "
                               f"(names: {', '.join(PROTOCOLS)}; or a number 1..255)")
        return number
    # 0 is the core's "any protocol" (and IPv6 hop-by-hop, never a flow's protocol)
    if not _is_integer(value) or not 1 <= value <= 255:
        raise ControlError(f"{method}: protocol must be a name or an integer 1..255, "
                           f"got {value!r}")
    return value
