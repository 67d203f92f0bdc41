"""`option max_flows 'auto'`: a flow table sized for the router it runs on.

    capacity = min(MemTotal / 32 / SLOT_BYTES,       the table at most ~3 % of RAM
                   2 * nf_conntrack_max)             every connection the kernel can
                                                     track, both directions
    rounded down to a multiple of 1024, within [MIN_FLOWS, MAX_FLOWS];
    without conntrack (the module not loaded): min(memory bound, DEFAULT_FLOWS).

Why these two bounds: the table is reserved at start and, once flows fill
it, resident in full (an idle probe holds little of it, a busy one all),
so it must leave the router's RAM to the router: 1/32 is 4 MB of a 128 MB
router.  And the
kernel's own connection table is the best estimate of how many
conversations the router is sized to carry: its nf_conntrack_max
connections are at most twice as many unidirectional flows (biflow or
not, the table holds one slot a direction until the record is built).
Traffic the router bridges without tracking it is the exception; a table
that is too small evicts (counted, overflow option), it does not lose counts.

Examples (SLOT_BYTES 96): 64 MB, conntrack 4096 -> 8192 flows; 128 MB,
conntrack 16384 -> 32768 flows (3.3 MB); 256 MB, conntrack 65536 -> 87040
flows (memory bound, 7.6 MB); 1 GB, conntrack 262144 -> 349184 flows.
"""

MEMINFO = "/proc/meminfo"
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"

SLOT_BYTES = 96            # what a flow of max_flows commits, all told (test_table_size checks it)
MEMORY_SHARE = 32          # the table takes at most 1/32 of MemTotal
FLOWS_PER_CONNECTION = 2   # a connection is two unidirectional flows
MIN_FLOWS = 1024
MAX_FLOWS = 1 << 24        # schema.py's bound for max_flows
DEFAULT_FLOWS = 65536      # the fixed default, when conntrack says nothing
ROUND = 1024


def mem_total_bytes(meminfo_text):
    for line in meminfo_text.splitlines():
        if line.startswith("MemTotal:"):
            words = line.split()
            return int(words[1]) * 1024 if len(words) > 2 and words[2] == "kB" else int(words[1])
    return None


def choose(mem_total, conntrack_max, slot_bytes=SLOT_BYTES):
    """(capacity, reason): the formula above on the figures given (None: unknown)."""
    bounds = []
    if mem_total:
        bounds.append((mem_total // MEMORY_SHARE // slot_bytes,
                       f"1/{MEMORY_SHARE} of MemTotal {mem_total // (1024 * 1024)} MB "
                       f"at {slot_bytes} bytes a flow"))
    if conntrack_max:
        bounds.append((conntrack_max * FLOWS_PER_CONNECTION,
                       f"{FLOWS_PER_CONNECTION} x nf_conntrack_max {conntrack_max}"))
    else:
        bounds.append((DEFAULT_FLOWS, "the default (no nf_conntrack_max)"))
    limit, why = min(bounds, key=lambda bound: bound[0])
    capacity = max(MIN_FLOWS, min(MAX_FLOWS, limit // ROUND * ROUND))
    if capacity != limit // ROUND * ROUND:
        why += f", held within {MIN_FLOWS}..{MAX_FLOWS}"
    return capacity, f"auto: {capacity} flows ({why})"


def _read(path):
    try:
        with open(path, encoding="ascii") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):
        return None


def auto_max_flows(meminfo=None, conntrack_max=None):
    """(capacity, reason) for this machine, from /proc."""
    text = _read(meminfo or MEMINFO)
    mem_total = mem_total_bytes(text) if text else None
    text = _read(conntrack_max or CONNTRACK_MAX)
    connections = int(text) if text and text.strip().isdigit() else None
    return choose(mem_total, connections)
