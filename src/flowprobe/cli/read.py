"""flowprobe read FILE.pcap [FILE ...]: meter capture files offline.

Text by default, a line a flow as nfdump's `-o long` writes them (start
time, duration, protocol, [v6]:port, TCP flags, packets, bytes, end
reason); --format for a line of your own; --json for one object a record
(formatted in C). A summary goes to stderr at the end (flows, packets,
bytes, drops by reason; with --json the meter's counters as one JSON
line), and while a large input is read, a progress line on stderr when
stderr is a terminal.
"""

import argparse
import os
import sys
import time

from flowprobe.cli import units
from flowprobe.meter import CaptureError, Meter, MeterError, packets_ignored
from flowprobe.records import record_to_dict
from flowprobe.schema import TUNNELS
from flowprobe.settings import OVERFLOW_POLICIES, MeterSettings, SettingsError

DEFAULTS = MeterSettings()
PROGRESS_MIN_BYTES = 32 * 1024 * 1024   # smaller inputs are read before anyone waits
PROGRESS_SECONDS = 0.5                  # the first line after this, then as often

# the --json keys a record can have: what --format may name
RECORD_FIELDS = ("ip_version", "protocol", "src_addr", "dst_addr", "src_port", "dst_port",
                 "packets", "octets", "flow_start_ms", "flow_end_ms", "tcp_flags", "tos",
                 "vlan_id", "inner_vlan_id", "ifindex", "end_reason", "ipsec_spi", "direction",
                 "reverse_packets", "reverse_octets", "reverse_start_ms", "reverse_end_ms",
                 "reverse_tcp_flags")

LINE = "{:<23} {:>9} {:<6} {:>21} -> {:<21} {:<8} {:>7} {:>9}"


# ---- table options ----

def _add_table_options(parser):
    table = parser.add_argument_group("flow table (the daemon's defaults)")
    table.add_argument("--max-flows", type=int, default=DEFAULTS.max_flows)
    table.add_argument("--max-fragments", type=int, default=DEFAULTS.max_fragments)
    for name in ("idle_timeout", "active_timeout", "unanswered_timeout", "tcp_end_grace",
                 "fragment_timeout"):
        table.add_argument("--" + name.replace("_", "-"), type=float, metavar="SECONDS",
                           default=getattr(DEFAULTS, name))
    table.add_argument("--overflow", choices=OVERFLOW_POLICIES, default=DEFAULTS.overflow_policy,
                       help="when the table is full: evict the least recently seen flow, "
                            "or refuse new flows")
    table.add_argument("--biflow", action="store_true",
                       help="fold the reverse direction into the same record (RFC 5103)")
    table.add_argument("--hash-seed", type=int, default=0, help=argparse.SUPPRESS)
    table.add_argument("--tunnels", choices=TUNNELS, default=DEFAULTS.tunnels,
                       help="meter a tunnel's packets (outer), the packets inside it (inner), "
                            "or both (each tunnel packet in two flows)")
    table.add_argument("--icmp-errors", action="store_true",
                       help="count ICMP errors on the flows whose packets they quote")
    table.add_argument("--l2-flows", action="store_true",
                       help="meter non-IP frames (ARP, LLDP, ...) as layer-2 flows")
    table.add_argument("--verify-checksums", action="store_true",
                       help="check IP, TCP, UDP and ICMP checksums (counted, per flow too)")


def _settings_from(args, biflow=False, macs=False):
    return MeterSettings(
        max_flows=args.max_flows,
        max_fragments=args.max_fragments,
        idle_timeout=args.idle_timeout,
        active_timeout=args.active_timeout,
        unanswered_timeout=args.unanswered_timeout,
        tcp_end_grace=args.tcp_end_grace,
        fragment_timeout=args.fragment_timeout,
        overflow_policy=args.overflow,
        bidirectional=args.biflow or biflow,
        hash_seed=args.hash_seed,
        macs=macs,
        tunnels=args.tunnels,
        icmp_errors=args.icmp_errors,
        l2_flows=args.l2_flows,
        verify_checksums=args.verify_checksums,
    )


# ---- text ----

def text_header(bidirectional=False):
    zone = time.strftime("%Z") or "local"
    header = LINE.format(f"Date first seen ({zone})", "Duration", "Proto", "Src IP Addr:Port",
                         "Dst IP Addr:Port", "Flags", "Packets", "Bytes")
    if bidirectional:
        header += f" {'RPackets':>8} {'RBytes':>9}"
    return header + " End"


def text_line(record, bidirectional=False):
    """One record as nfdump's long format writes it, in our units."""
    protocol = record["protocol"]
    source, destination = units.flow_ends(record)
    line = LINE.format(units.timestamp_ms(record["flow_start_ms"]),
                       units.seconds_ms(record["flow_end_ms"] - record["flow_start_ms"]),
                       units.protocol_name(protocol), source, destination,
                       units.tcp_flags(record["tcp_flags"], protocol),
                       units.count(record["packets"]), units.size(record["octets"]))
    if bidirectional:
        line += (f" {units.count(record.get('reverse_packets', 0)):>8}"
                 f" {units.size(record.get('reverse_octets', 0)):>9}")
    return f"{line} {units.end_reason(record['end_reason'])}"


def check_format(template):
    """A --format template's error in words, or None: only record fields."""
    import string  # only for --format
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        return f"{e}"
    for name in names:
        field = name.split(".")[0].split("[")[0]
        if not field:
            return "fields are named, not numbered: {src_addr}, not {} or {0}"
        if field not in RECORD_FIELDS:
            return f"no field {field!r} (fields: {', '.join(RECORD_FIELDS)})"
    return None


class _Missing(dict):
    """A field the record does not have (ipsec_spi on TCP) is empty."""

    def __missing__(self, key):
        return ""


def summary_line(counters, flows, packets, octets):
    """'Summary: 3 flows, 5 packets, 3.2 KiB; dropped: none': every packet
    read is in a flow or under a reason here."""
    drops = [("not IP", counters.get("dropped_non_ip", 0))]
    drops += [(words, counters.get(key, 0)) for key, words in units.METER_DROPS]
    dropped = ", ".join(f"{words} {units.count(n)}" for words, n in drops if n) or "none"
    return (f"Summary: {units.plural(flows, 'flow')}, {units.plural(packets, 'packet')}, "
            f"{units.size(octets)}; dropped: {dropped}")


# ---- progress ----

class Progress:
    """'reading big.pcap: 1.2 GiB of 3.4 GiB (35.0 %), 812 k packets/s, 0:42 left'
    on stderr, redrawn in place; only on a terminal and for large inputs."""

    def __init__(self, paths, meter, stream, min_bytes=PROGRESS_MIN_BYTES,
                 every=PROGRESS_SECONDS, clock=time.monotonic):
        self.meter, self.stream, self.every, self.clock = meter, stream, every, clock
        self.sizes = {}
        for path in paths:
            try:
                self.sizes[path] = os.stat(path).st_size
            except OSError:
                self.sizes[path] = 0
        self.total = sum(self.sizes.values())
        self.enabled = stream.isatty() and self.total >= min_bytes
        self.started = self.shown = clock()
        self.done_before = 0      # bytes of the files already read
        self.path, self.fd = None, None
        self.drawn = False

    def file(self, path):
        """The next input is `path` (None: every input is read; what is left
        is the records of the flows still open)."""
        if self.path is not None:
            self.done_before += self.sizes.get(self.path, 0)
        self.path, self.fd = path, None

    def _position(self):
        """How far libpcap is in the current file: its descriptor's offset
        (/proc/self/fd: libpcap keeps the stream to itself)."""
        if self.path is None:
            return 0
        if self.fd is None:
            try:
                wanted = os.stat(self.path)
                for name in os.listdir("/proc/self/fd"):
                    try:
                        found = os.stat(f"/proc/self/fd/{name}")
                    except OSError:
                        continue
                    if (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino):
                        self.fd = int(name)
                        break
            except OSError:
                return 0
            if self.fd is None:
                return 0
        try:
            return min(os.lseek(self.fd, 0, os.SEEK_CUR), self.sizes.get(self.path, 0))
        except OSError:
            return 0

    def text(self, now):
        done = self.done_before + self._position()
        elapsed = max(now - self.started, 1e-6)
        packets = self.meter.counters()["packets_read"]
        name = os.path.basename(str(self.path)) if self.path else "done"
        line = (f"reading {name}: {units.size(done)} of "
                f"{units.size(self.total)} ({units.percent(done / (self.total or 1))}), "
                f"{units.packet_rate(packets / elapsed)}")
        if done:
            line += f", {units.duration((self.total - done) * elapsed / done)} left"
        return line

    def update(self):
        if not self.enabled:
            return
        now = self.clock()
        if now - self.shown < self.every:
            return
        self.shown = now
        import shutil
        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r\033[K" + self.text(now)[:width])
        self.stream.flush()
        self.drawn = True

    def clear(self):
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False


# ---- records out ----

class RecordSink:
    """Where `read` sends records: stdout (JSON formatted in C, text, or the
    --format line) and the collectors of --export, a batch at a time."""

    def __init__(self, meter, exporter, mode, template=None, progress=None):
        self.meter, self.exporter, self.mode, self.template = meter, exporter, mode, template
        self.progress = progress
        self.out = sys.stdout.buffer
        self.started = False
        self.flows = self.packets = self.octets = 0

    def _now_ms(self):
        return self.meter.counters()["clock_ms"]

    def _exporter(self):
        if not self.started:
            # v9/v5 uptimes count from the capture's first packet, known by now
            counters = self.meter.counters()
            self.exporter.start(counters["clock_ms"], boot_ms=counters["clock_first_ms"])
            self.started = True
        return self.exporter

    def header(self):
        if self.mode == "text":
            self.out.write((text_header(self.meter.settings.bidirectional) + "\n").encode())

    def _lines(self, batch, count):
        bidirectional = self.meter.settings.bidirectional
        records = [record_to_dict(batch[i], bidirectional) for i in range(count)]
        for record in records:
            self.flows += 1
            self.packets += record["packets"] + record.get("reverse_packets", 0)
            self.octets += record["octets"] + record.get("reverse_octets", 0)
        if self.mode == "text":
            return "".join(text_line(r, bidirectional) + "\n" for r in records)
        return "".join(self.template.format_map(_Missing(r)) + "\n" for r in records)

    def drain(self):
        for batch, count in self.meter.drain_raw():
            if self.exporter:
                self._exporter().export(batch, count, self._now_ms())
            if self.mode == "json":
                self.meter.format_json(batch, count, self.out.write)
            elif self.mode in ("text", "format"):
                self.out.write(self._lines(batch, count).encode())
        if self.exporter and self.started:
            self.exporter.tick(self._now_ms())
        if self.progress:
            self.progress.update()

    def finish(self):
        self.drain()
        self.out.flush()
        if not self.exporter:
            return []
        exporter = self._exporter()
        exporter.finish(self._now_ms(), packets_ignored(self.meter.counters()))
        return exporter.stats()


def command_read(args):
    if args.format is not None:
        problem = check_format(args.format)
        if problem:
            print(f"flowprobe: --format: {problem}", file=sys.stderr)
            return 2
    profiles, macs = [], False
    if args.export:  # the exporters' modules only when asked for
        from flowprobe.export.fields import MAC_FIELDS, with_layer2_fields
        from flowprobe.export.profile import ProfileError, profile_from_url
        try:
            profiles = [profile_from_url(url) for url in args.export]
        except ProfileError as e:
            print(f"flowprobe: --export: {e}", file=sys.stderr)
            return 2
        macs = any(name in MAC_FIELDS for p in profiles for name in p.fields)
        if args.l2_flows:   # their own template, as the daemon's collectors get it
            profiles = with_layer2_fields(profiles, profiles)
    try:
        settings = _settings_from(args, biflow=any(p.biflow for p in profiles), macs=macs)
        meter = Meter(settings)
        for path in args.files:  # every file must open before anything is printed
            meter.close(meter.open_file(path))
    except SettingsError as e:
        print(f"flowprobe: --{e.option.replace('_', '-')}: {e}", file=sys.stderr)
        return 2
    except MeterError as e:
        print(f"flowprobe: {e}", file=sys.stderr)
        return 1

    if args.json:
        mode = "json"
    elif args.format is not None:
        mode = "format"
    else:
        mode = "text" if not profiles else "none"
    progress = Progress(args.files, meter, sys.stderr, min_bytes=args.progress_min_bytes)
    exporter = None
    if profiles:  # transports are opened (and checked) before reading
        from flowprobe.export.collectors import Exporter
        from flowprobe.export.transport import TransportError
        try:
            exporter = Exporter(profiles, boot_ms=0, meter_biflow=meter.settings.bidirectional)
        except TransportError as e:
            print(f"flowprobe: --export: {e}", file=sys.stderr)
            return 2
    sink = RecordSink(meter, exporter, mode, args.format, progress)
    sink.header()
    status = 0
    try:
        for path in args.files:
            progress.file(path)
            for _ in meter.read_file(path, drain=sink.drain):
                pass
        progress.file(None)
        meter.flush()
        exporters = sink.finish()
    except CaptureError as e:
        # a capture cut short: what was read is still reported
        progress.clear()
        print(f"flowprobe: {e}", file=sys.stderr)
        status = 1
        meter.flush()
        exporters = sink.finish()
    finally:
        progress.clear()
    for collector in exporters:
        if collector["records_not_sent"]:
            print(f"flowprobe: {collector['collector']}: {collector['records_not_sent']} records "
                  f"not sent (last error: {collector['last_error']})", file=sys.stderr)
    counters = meter.counters()
    if mode in ("text", "format"):
        print(summary_line(counters, sink.flows, sink.packets, sink.octets), file=sys.stderr)
    else:
        summary = {"counters": counters, "memory_bytes": meter.memory_bytes}
        if profiles:
            summary["exporters"] = exporters
        import json  # the summary line of --json and --export only
        print(json.dumps(summary), file=sys.stderr)
    return status


def add_parser(subparsers):
    read = subparsers.add_parser(
        "read", help="meter capture files and print their flow records",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    read.add_argument("files", nargs="+", metavar="FILE")
    output = read.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per record")
    output.add_argument("--format", metavar="TEMPLATE",
                        help="a line per record, Python str.format style over the --json "
                             "keys, e.g. '{src_addr} {dst_port} {octets}'")
    read.add_argument("--export", action="append", default=[], metavar="URL",
                      help="send the records to a collector: ipfix://HOST:PORT, netflow9://..., "
                           "netflow5://... with ?biflow=1&transport=tcp&fields=a,b&domain=N"
                           "&group=NAME; repeatable")
    read.add_argument("--progress-min-bytes", type=int, default=PROGRESS_MIN_BYTES,
                      help=argparse.SUPPRESS)
    _add_table_options(read)
    read.set_defaults(handler=command_read)
