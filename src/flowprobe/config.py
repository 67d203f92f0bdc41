"""The service's configuration: /etc/config/flowprobe (UCI) to a checked Config.

One reader, on OpenWrt as everywhere: a strict parser of the UCI syntax,
checked against libuci (tests compare it with `uci export` of every
fixture wherever the uci command exists).  It reads the committed file
only: libuci's own readers (and python3-uci) also apply changes staged in
/tmp/.uci but not yet committed, so a value staged in LuCI and not yet
applied would have made a reload read it; and where libuci silently drops
the rest of a line after `word;`, this parser says so.  One function turns
sections into a Config, and every error names the section, the option,
the value and what is allowed.

UCI semantics kept by the strict parser (as libuci's file.c and list.c):
- `option x ''` sets nothing: x keeps an earlier value, or stays absent
  (and takes its default);
- `list x` after `option x` turns x into a list holding both; `option x`
  after a list replaces it;
- a named section given twice is one section: later options override,
  lists grow; the same name with another type is an error;
- quotes: '...' literal, "..." and bare words with backslash escapes,
  words glued together ('it'\\''s', as `uci export` writes a quote), '#'
  comments, ';' between commands, the short commands c/o/l/p. A ';' right
  after an unquoted word is an error: libuci drops the rest of that line.
"""

from __future__ import annotations

import re

from flowprobe import schema
from flowprobe.addresses import is_ip_address
from flowprobe.enrich.settings import EnrichSettings
from flowprobe.errors import OptionError
from flowprobe.export.fields import MAC_FIELDS
from flowprobe.export.profile import CollectorProfile
from flowprobe.frozen import Frozen, replace
from flowprobe.schema import DIRECTIONS, LOG_LEVELS  # noqa: F401  (their home)
from flowprobe.settings import MeterSettings
from flowprobe.sources.conntrack_settings import ConntrackSettings

PACKAGE = "flowprobe"
DEFAULT_PATH = "/etc/config/flowprobe"
TRUE_WORDS = ("1", "yes", "on", "true", "enabled")       # as functions.sh's get_bool
FALSE_WORDS = ("0", "no", "off", "false", "disabled")
BOOLEAN_ALLOWED = "1 or 0 (also yes/no, on/off, true/false, enabled/disabled)"
SUN_PATH_MAX = 107   # sockaddr_un.sun_path holds 108 bytes with the final NUL
IFNAMSIZ = 16        # Linux interface names: at most 15 bytes


class ConfigError(Exception):
    """A configuration the service cannot run with, said so a user can act:
    "flowprobe.main.idle_timeout: invalid value 'abc' (allowed: seconds from
    0.001 to 604800)" or "/etc/config/flowprobe line 12: option outside a
    section"."""

    def __init__(self, problem=None, *, section=None, option=None, value=None, allowed=None,
                 source=None, line=None):
        self.section, self.option, self.value, self.allowed = section, option, value, allowed
        self.source, self.line = source, line
        if problem is None:
            problem = f"invalid value {value!r} (allowed: {allowed})"
        if line is not None:
            where = f"{source} line {line}"
        elif section is not None:
            where = f"{PACKAGE}.{section}" + (f".{option}" if option else "")
        else:
            where = source or PACKAGE
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class ConfigOptionError(OptionError):
    """A value an InterfaceConfig or a Config cannot hold (named by field)."""


class InterfaceConfig(Frozen):
    name: str               # as configured: an OpenWrt logical name ("lan") or a device ("eth0")
    device: str = ""        # explicit device; "" = resolve `name` (the daemon does that)
    bpf_filter: str = ""
    promiscuous: bool = False
    # on a router each forwarded packet passes two interfaces: counted at its
    # ingress only, it is counted once
    direction: str = "in"   # in | out | both
    snaplen: int = 128      # enough for QinQ + PPPoE + IPv6 with extension headers + TCP
    buffer_kb: int = 2048   # pcap buffer; 0: libpcap's default
    sampling: int = 1       # 1 in N packets metered (and sampled for sFlow)
    sampling_algorithm: str = "random"   # sFlow's; "deterministic": every N-th
    tunnels: str = "outer"  # outer | inner | both: a tunnel's packets, what they carry, or both
    l2_flows: bool = False  # non-IP frames (ARP, LLDP, ...) as layer-2 flows, not only counted

    def __post_init__(self):
        for option in ("name", "device"):
            value = getattr(self, option)
            if not (option == "device" and value == "") and not _is_device_name(value):
                raise ConfigOptionError(option, value, DEVICE_NAME_ALLOWED)
        if not isinstance(self.bpf_filter, str) or _has_control_characters(self.bpf_filter):
            raise ConfigOptionError("bpf_filter", self.bpf_filter,
                                    "a libpcap filter expression (no control characters)")
        if not isinstance(self.promiscuous, bool):
            raise ConfigOptionError("promiscuous", self.promiscuous, "true or false")
        if not isinstance(self.l2_flows, bool):
            raise ConfigOptionError("l2_flows", self.l2_flows, "true or false")
        for name in ("direction", "snaplen", "buffer_kb", "sampling", "sampling_algorithm",
                     "tunnels"):
            schema.check(ConfigOptionError, name, getattr(self, name))


class Config(Frozen):
    enabled: bool
    meter: MeterSettings
    interfaces: tuple        # of InterfaceConfig
    collectors: tuple        # of CollectorProfile (enabled ones only; name = section name)
    log_level: str = "info"  # debug | info | warning | error
    control_socket: str = "/var/run/flowprobe.sock"
    user: str = ""           # after start-up, run as this user ("" stays as started)
    spool_dir: str = "/var/spool/flowprobe"   # collectors' spools (option spool_kb)
    conntrack: ConntrackSettings = ConntrackSettings()   # option source and conntrack_*
    warnings: tuple = ()     # unknown sections/options, each naming flowprobe.section.option
    enrich: EnrichSettings = EnrichSettings()   # options routing, route_* (enrich/)
    history: bool = False    # the flow history store (flowprobe.store), off by default
    history_dir: str = "/tmp/flowprobe-history"   # RAM on a router: see README "History"
    history_kb: int = 4096   # everything under history_dir, SQLite's side files included
    history_flush: float = 5.0   # seconds of records a kill -9 may lose
    max_flows_auto: str = ""  # max_flows 'auto': the capacity chosen and why (table_size.py)

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ConfigOptionError("enabled", self.enabled, "true or false")
        schema.check(ConfigOptionError, "log_level", self.log_level)
        path = self.control_socket
        if (not isinstance(path, str) or not path.startswith("/") or "\0" in path
                or len(path.encode()) > SUN_PATH_MAX):
            raise ConfigOptionError("control_socket", path,
                                    f"an absolute path of at most {SUN_PATH_MAX} bytes")
        if self.user and not USER_NAME.fullmatch(self.user):
            raise ConfigOptionError("user", self.user, USER_NAME_ALLOWED)
        if (not isinstance(self.spool_dir, str) or not self.spool_dir.startswith("/")
                or "\0" in self.spool_dir):
            raise ConfigOptionError("spool_dir", self.spool_dir, "an absolute path")
        if not isinstance(self.history, bool):
            raise ConfigOptionError("history", self.history, "true or false")
        if (not isinstance(self.history_dir, str) or not self.history_dir.startswith("/")
                or "\0" in self.history_dir):
            raise ConfigOptionError("history_dir", self.history_dir, "an absolute path")
        for name in ("history_kb", "history_flush"):
            schema.check(ConfigOptionError, name, getattr(self, name))


# ---- reading: the strict parser ----

class Section(Frozen):
    type: str
    name: str | None         # None: anonymous
    options: dict            # option -> str (option) or list of str (list)
    line: int | None = None  # where it starts (None from libuci)
    index: int = 0           # among the sections of its type, as uci's @type[index]

    @property
    def label(self):
        """How `uci show` names it: "main", or "@collector[0]" when anonymous."""
        return self.name if self.name is not None else f"@{self.type}[{self.index}]"


COMMANDS = {"config": "config", "c": "config", "option": "option", "o": "option",
            "list": "list", "l": "list", "package": "package", "p": "package"}
NAME = re.compile(r"[A-Za-z0-9_]+")          # section and option names (libuci's rule)
PACKAGE_NAME = re.compile(r"[A-Za-z0-9_-]+")
SECTION_TYPE = re.compile(r"[!-~]+")          # printable, no spaces
BLANKS = " \t\r\v\f"


def read_sections(text, source="<config>"):
    """The sections of a UCI file, as libuci would load them; a syntax error
    is a ConfigError naming the line."""
    sections, named, current, counts = [], {}, None, {}

    def fail(line, problem):
        raise ConfigError(problem, source=source, line=line)

    for line, words in _commands(text, source):
        command = COMMANDS.get(words[0])
        if command is None:
            fail(line, f"unknown command {words[0]!r} (allowed: config, option, list, package)")
        args = words[1:]
        wanted = 2 if command in ("config", "option", "list") else 1
        if any(args[wanted:]):
            fail(line, f"too many words after {command} (quote a value that holds spaces)")
        args = (args + [""] * wanted)[:wanted]
        if command == "package":
            # a single-file load ignores it, as libuci does
            if not PACKAGE_NAME.fullmatch(args[0]):
                fail(line, f"invalid package name {args[0]!r}")
        elif command == "config":
            kind, name = args[0], args[1] or None
            if not kind:
                fail(line, "config without a section type")
            if not SECTION_TYPE.fullmatch(kind):
                fail(line, f"invalid section type {kind!r} (allowed: printable, no spaces)")
            if name is not None and not NAME.fullmatch(name):
                fail(line, f"invalid section name {name!r} (allowed: letters, digits and _)")
            if name in named:
                current = named[name]
                if current.type != kind:
                    fail(line, f"section {name!r} given again with another type "
                               f"({kind!r}; it was {current.type!r} at line {current.line})")
                continue
            current = Section(kind, name, {}, line, counts.get(kind, 0))
            counts[kind] = current.index + 1
            sections.append(current)
            if name is not None:
                named[name] = current
        else:
            option, value = args
            if current is None:
                fail(line, f"{command} outside a section")
            if not option:
                fail(line, f"{command} without a name")
            if not NAME.fullmatch(option):
                fail(line, f"invalid option name {option!r} (allowed: letters, digits and _)")
            options = current.options
            if command == "option":
                if value:   # libuci's parser skips option x '': x keeps what it had
                    options[option] = value
            elif option not in options:
                options[option] = [value]
            elif isinstance(options[option], str):
                options[option] = [options[option], value]
            else:
                options[option].append(value)
    return sections


def _commands(text, source):
    """(line, words) for each command: one a line, or several split by ';'."""
    position, end, line = 0, len(text), 1
    words, start = [], 1
    while True:
        while position < end and text[position] in BLANKS:
            position += 1
        if position >= end or text[position] in "\n;":
            if words:
                yield start, words
            words = []
            if position >= end:
                return
            if text[position] == "\n":
                line += 1
            position += 1
            continue
        if text[position] == "#":
            newline = text.find("\n", position)
            position = end if newline < 0 else newline
            continue
        if not words:
            start = line
        word, quoted, position, line = _word(text, position, line, source)
        if word or quoted:
            words.append(word)


def _word(text, position, line, source):
    """One word: bare, '...', "..." or several of them glued together."""
    characters, quoted, end, first_line = [], False, len(text), line
    while position < end:
        character = text[position]
        if character == "'":
            close = text.find("'", position + 1)
            if close < 0:
                raise ConfigError("unterminated ' quote", source=source, line=first_line)
            characters.append(text[position + 1:close])
            line += text.count("\n", position, close)
            position, quoted = close + 1, True
        elif character == '"':
            position, quoted = position + 1, True
            while True:
                if position >= end:
                    raise ConfigError('unterminated " quote', source=source, line=first_line)
                character = text[position]
                if character == '"':
                    position += 1
                    break
                if character == "\\":
                    position, line = _backslash(text, position, line, characters)
                    continue
                line += character == "\n"
                characters.append(character)
                position += 1
        elif character == "\\":
            position, line = _backslash(text, position, line, characters)
        elif character == ";" and characters and not quoted:
            raise ConfigError("';' right after a word (libuci ignores the rest of the line; "
                              "put a space before it)", source=source, line=line)
        elif character in BLANKS or character in "\n#;":
            break
        else:
            characters.append(character)
            position += 1
    return "".join(characters), quoted, position, line


def _backslash(text, position, line, characters):
    """A backslash keeps the next character; before a newline it joins lines."""
    following = text[position + 1:position + 2]
    if following == "\n":
        return position + 2, line + 1
    if text.startswith("\r\n", position + 1):
        return position + 3, line + 1
    characters.append(following)
    return position + 1 + len(following), line


# ---- sections to a Config ----

BOOLEAN, INTEGER, SECONDS, TEXT, WORDS = "boolean", "integer", "seconds", "text", "words"
RATE = "rate"   # '1:N' (or N): the N

METER_OPTIONS = {
    "max_flows": ("max_flows", INTEGER),
    "max_flows_ipv6": ("max_flows_ipv6", INTEGER),
    "max_fragments": ("max_fragments", INTEGER),
    "idle_timeout": ("idle_timeout", SECONDS),
    "active_timeout": ("active_timeout", SECONDS),
    "unanswered_timeout": ("unanswered_timeout", SECONDS),
    "tcp_end_grace": ("tcp_end_grace", SECONDS),
    "fragment_timeout": ("fragment_timeout", SECONDS),
    "overflow": ("overflow_policy", TEXT),
    "biflow": ("bidirectional", BOOLEAN),
    "hash_seed": ("hash_seed", INTEGER),
    "icmp_errors": ("icmp_errors", BOOLEAN),
    "verify_checksums": ("verify_checksums", BOOLEAN),
}
CAPTURE_OPTIONS = {   # in main: the defaults of every interface
    "direction": ("direction", TEXT),
    "promisc": ("promiscuous", BOOLEAN),
    "filter": ("bpf_filter", TEXT),
    "snaplen": ("snaplen", INTEGER),
    "buffer_kb": ("buffer_kb", INTEGER),
    "sampling": ("sampling", RATE),
    "sampling_algorithm": ("sampling_algorithm", TEXT),
    "tunnels": ("tunnels", TEXT),
    "l2_flows": ("l2_flows", BOOLEAN),
}
CONNTRACK_OPTIONS = {   # in main: the metering source (sources/conntrack.py)
    "source": ("source", TEXT),
    "conntrack_max_connections": ("conntrack_max_connections", INTEGER),
    "conntrack_dump_interval": ("conntrack_dump_interval", SECONDS),
    "conntrack_vanish_grace": ("conntrack_vanish_grace", SECONDS),
    "conntrack_buffer_kb": ("conntrack_buffer_kb", INTEGER),
}
ENRICH_OPTIONS = {   # in main: the enrichment stage (flowprobe.enrich)
    "routing": ("routing", BOOLEAN),
    "route_cache": ("route_cache", INTEGER),
    "route_wait": ("route_wait", SECONDS),
    "devices": ("devices", BOOLEAN),
    "lease_file": ("lease_file", TEXT),
    "dhcpv6_lease_file": ("dhcpv6_lease_file", TEXT),
    "prefix_file": ("prefix_file", TEXT),
    "max_prefixes": ("max_prefixes", INTEGER),
}
MAIN_OPTIONS = {
    "enabled": ("enabled", BOOLEAN),
    "interface": ("interfaces", WORDS),
    "log_level": ("log_level", TEXT),
    "control_socket": ("control_socket", TEXT),
    "user": ("user", TEXT),
    "spool_dir": ("spool_dir", TEXT),
    **METER_OPTIONS,
    **CAPTURE_OPTIONS,
    **CONNTRACK_OPTIONS,
    **ENRICH_OPTIONS,
    "history": ("history", BOOLEAN),
    "history_dir": ("history_dir", TEXT),
    "history_kb": ("history_kb", INTEGER),
    "history_flush": ("history_flush", SECONDS),
}
INTERFACE_OPTIONS = {
    "name": ("name", TEXT),    # for names a UCI section cannot have: br-lan, eth0.2
    "device": ("device", TEXT),
    **CAPTURE_OPTIONS,
}
COLLECTOR_OPTIONS = {
    "enabled": ("enabled", BOOLEAN),
    "protocol": ("protocol", TEXT),
    "host": ("host", TEXT),
    "port": ("port", INTEGER),
    "transport": ("transport", TEXT),
    "biflow": ("biflow", BOOLEAN),
    "field": ("fields", WORDS),
    "fields": ("fields", WORDS),
    "observation_domain": ("observation_domain", INTEGER),
    "template_refresh_seconds": ("template_refresh_seconds", INTEGER),
    "template_refresh_packets": ("template_refresh_packets", INTEGER),
    "stats_interval": ("stats_interval", INTEGER),
    "mtu": ("mtu", INTEGER),
    "source_address": ("source_address", TEXT),
    "group": ("group", TEXT),
    "queue_limit": ("queue_limit", INTEGER),
    "spool_kb": ("spool_kb", INTEGER),
    "counter_interval": ("counter_interval", INTEGER),
}
SECTION_TYPES = {"flowprobe": MAIN_OPTIONS, "interface": INTERFACE_OPTIONS,
                 "collector": COLLECTOR_OPTIONS}
# names people reach for that the file spells otherwise
ALIASES = {"overflow_policy": "overflow", "bidirectional": "biflow", "interfaces": "interface",
           "promiscuous": "promisc", "bpf_filter": "filter", "address": "host",
           "domain": "observation_domain"}

DEVICE_NAME_ALLOWED = "an interface name: 1 to 15 characters, no spaces, '/' or ':'"
HOST_ALLOWED = "an IPv4 or IPv6 address or a host name"
GROUP = re.compile(r"[A-Za-z0-9_.-]{1,64}")
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")   # as useradd and busybox adduser
USER_NAME_ALLOWED = "a user name: a letter or _, then up to 31 letters, digits, _ . or -"
HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
INTEGER_TEXT = re.compile(r"[0-9]+")
SECONDS_TEXT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
RATE_TEXT = re.compile(r"(1:)?[0-9]+")


def parse(text, source="<config>"):
    """A Config from UCI text, through the strict parser."""
    return build(read_sections(text, source))


def load(path=DEFAULT_PATH):
    """A Config from a file (the committed file: nothing staged in /tmp/.uci)."""
    return parse(_read_text(path), path)


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as e:
        raise ConfigError(f"cannot read it: {e.strerror or e}", source=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", source=path) from None


def build(sections):
    """Every value converted and checked; unknown sections and options become
    warnings; the first invalid value a ConfigError."""
    warnings = []
    by_type = {}
    for section in sections:
        if section.type in SECTION_TYPES:
            by_type.setdefault(section.type, []).append(section)
        else:
            warnings.append(f"{PACKAGE}.{section.label}: unknown section type {section.type!r}, "
                            f"ignored (known: {', '.join(SECTION_TYPES)})")
    mains = by_type.get("flowprobe", [])
    if not mains:
        raise ConfigError("missing (add: config flowprobe 'main')", section="main")
    if len(mains) > 1:
        raise ConfigError(f"a second flowprobe section (allowed: one; {PACKAGE}.{mains[0].label} "
                          "is the first)", section=mains[1].label)
    main = mains[0]
    values, origin = _options(main, MAIN_OPTIONS, warnings)
    max_flows_auto = ""
    if values.get("max_flows") == "auto":   # sized from this machine's memory and conntrack
        from flowprobe.table_size import auto_max_flows
        values["max_flows"], max_flows_auto = auto_max_flows()
        ipv6 = values.get("max_flows_ipv6")
        if isinstance(ipv6, int) and ipv6 > values["max_flows"]:   # a router smaller than meant
            warnings.append(f"{PACKAGE}.{main.label}.max_flows_ipv6: {ipv6} is more than "
                            f"max_flows {max_flows_auto}: {values['max_flows']} used")
            values["max_flows_ipv6"] = values["max_flows"]
    meter = _checked(MeterSettings, main, origin, {
        key: values[key] for key, _ in METER_OPTIONS.values() if key in values})
    interfaces = _interfaces(main, values, origin, by_type.get("interface", []), warnings)
    if any(i.tunnels != "outer" for i in interfaces):   # a table keyed by tunnel too
        meter = replace(meter, tunnels="inner")
    if any(i.l2_flows for i in interfaces):   # a table with room for the EtherType
        meter = replace(meter, l2_flows=True)
    collectors = tuple(profile for profile in
                       (_collector(section, warnings) for section in by_type.get("collector", []))
                       if profile is not None)
    own = {key: values[key] for key in ("enabled", "log_level", "control_socket", "user",
                                        "spool_dir", "history", "history_dir", "history_kb",
                                        "history_flush") if key in values}
    own.setdefault("enabled", False)   # a file that does not say so starts no capture
    conntrack = _checked(ConntrackSettings, main, origin, {
        key: values[key] for key, _ in CONNTRACK_OPTIONS.values() if key in values})
    if not conntrack.captures and interfaces:
        warnings.append(f"{PACKAGE}.{main.label}.interface: not captured with source "
                        f"'{conntrack.source}', ignored")
        interfaces = ()
    _check_sampling(main, interfaces, collectors, conntrack)
    if own["enabled"] and not interfaces and conntrack.captures:
        raise ConfigError("missing (required when enabled: at least one, as list interface 'lan')",
                          section=main.label, option="interface",
                          allowed="at least one interface")
    if any(name in MAC_FIELDS for profile in collectors for name in profile.fields):
        meter = replace(meter, macs=True)   # kept only while a collector asks for them
    enrich = _checked(EnrichSettings, main, origin, {
        key: values[key] for key, _ in ENRICH_OPTIONS.values() if key in values})
    enrich = replace(enrich, macs=meter.macs)
    return _checked(Config, main, origin, dict(
        own, meter=meter, interfaces=interfaces, collectors=collectors, conntrack=conntrack,
        warnings=tuple(warnings), enrich=enrich, max_flows_auto=max_flows_auto))


def _interfaces(main, values, origin, sections, warnings):
    defaults = {key: values[key] for key, _ in CAPTURE_OPTIONS.values() if key in values}
    template = _checked(InterfaceConfig, main, origin, dict(defaults, name="any"))
    names = values.get("interfaces", ())
    for position, name in enumerate(names):
        if not _is_device_name(name) or name in names[:position]:
            raise ConfigError(section=main.label, option=origin["interfaces"][0], value=name,
                              allowed=DEVICE_NAME_ALLOWED if name not in names[:position]
                              else "each interface once")
    overrides = {}
    for section in sections:
        target = section.options.get("name", section.name)
        if isinstance(target, list) or target not in names:
            problem = ("names no interface (no option name)" if target is None else
                       f"interface {target!r} is not in {PACKAGE}.{main.label}.interface")
            warnings.append(f"{PACKAGE}.{section.label}: {problem}; section ignored")
            continue
        if target in overrides:
            raise ConfigError(f"a second section for interface {target!r} (allowed: one; "
                              f"{PACKAGE}.{overrides[target].label} is for it)",
                              section=section.label)
        overrides[target] = section
    interfaces = []
    for name in names:
        section = overrides.get(name)
        if section is None:
            interfaces.append(replace(template, name=name))
            continue
        own, own_origin = _options(section, INTERFACE_OPTIONS, warnings)
        own.pop("name", None)
        interfaces.append(_checked(lambda **kw: replace(template, **kw), section, own_origin,
                                   dict(own, name=name)))
    return tuple(interfaces)


def sampling_interval(config):
    """The 1-in-N every captured record was sampled at (one for all interfaces
    while flow collectors are configured: _check_sampling)."""
    return max((i.sampling for i in config.interfaces), default=1)


def _check_sampling(main, interfaces, collectors, conntrack):
    """IPFIX and NetFlow collectors scale every record by one sampling
    interval (export/encoding.py): the interfaces share it, and records
    metered whole (conntrack's) do not mix with sampled ones."""
    if not any(c.protocol != "sflow" for c in collectors):
        return
    rates = sorted({i.sampling for i in interfaces})
    if len(rates) > 1:
        raise ConfigError(f"differs between interfaces (1:{rates[0]} and 1:{rates[1]}; allowed: "
                          "one rate for all while an IPFIX or NetFlow collector is configured, "
                          "as collectors scale every record by one interval)",
                          section=main.label, option="sampling")
    if rates and rates[0] > 1 and conntrack.tracks:
        raise ConfigError(f"1:{rates[0]} with source '{conntrack.source}' (allowed: 1:1 with "
                          "conntrack, whose records are whole: a collector would scale them too)",
                          section=main.label, option="sampling")


def _collector(section, warnings):
    values, origin = _options(section, COLLECTOR_OPTIONS, warnings)
    enabled = values.pop("enabled", True)   # a collector section is meant to be used

    def invalid(option, allowed):
        uci_option, raw = origin[option]
        return ConfigError(section=section.label, option=uci_option, value=raw, allowed=allowed)

    if "host" not in values:
        raise ConfigError(f"missing (required: {HOST_ALLOWED})", section=section.label,
                          option="host", allowed=HOST_ALLOWED)
    if not _is_host(values["host"]):
        raise invalid("host", HOST_ALLOWED)
    if "source_address" in values and not _is_ip_address(values["source_address"]):
        raise invalid("source_address", "an IPv4 or IPv6 address of this host, or empty")
    if "group" in values and not GROUP.fullmatch(values["group"]):
        raise invalid("group", "a name of at most 64 letters, digits, '_', '.' or '-'")
    profile = _checked(CollectorProfile, section, origin, dict(values, name=section.name or ""))
    return profile if enabled else None


def _options(section, spec, warnings):
    """(field -> converted value, field -> (option, raw)) of a section's known
    options; the others are warned about."""
    values, origin = {}, {}
    for option, raw in section.options.items():
        if option not in spec:
            warnings.append(f"{PACKAGE}.{section.label}.{option}: unknown option, ignored"
                            + _hint(option, spec))
            continue
        key, kind = spec[option]
        if key in origin:
            raise ConfigError(f"also given as {origin[key][0]} (allowed: one of them)",
                              section=section.label, option=option, value=raw)
        origin[key] = (option, raw)
        values[key] = _convert(section, option, raw, kind)
    return values, origin


def _hint(option, spec):
    close = ALIASES.get(option)
    if close not in spec:
        try:   # only for a misspelt option: not at every start
            from difflib import get_close_matches
        except ImportError:   # a trimmed python3-light: the hint is a courtesy
            return ""
        matches = get_close_matches(option, list(spec), n=1, cutoff=0.75)
        close = matches[0] if matches else None
    return f" (did you mean {close}?)" if close else ""


def _convert(section, option, raw, kind):
    """The typed value; text that is no number stays text, so the settings'
    own check rejects it with what they allow."""
    if kind == WORDS:
        items = [raw] if isinstance(raw, str) else raw
        # as the init script's `for iface in $interface`: lists and options split alike
        return tuple(word for item in items for word in item.split())
    if isinstance(raw, list):
        raise ConfigError(section=section.label, option=option, value=raw,
                          allowed=f"one value (option {option}, not list)")
    if kind == BOOLEAN:
        if raw in TRUE_WORDS:
            return True
        if raw in FALSE_WORDS:
            return False
        raise ConfigError(section=section.label, option=option, value=raw,
                          allowed=BOOLEAN_ALLOWED)
    if kind == INTEGER and INTEGER_TEXT.fullmatch(raw):
        return int(raw)
    if kind == SECONDS and SECONDS_TEXT.fullmatch(raw):
        return float(raw)
    if kind == RATE and RATE_TEXT.fullmatch(raw):
        return int(raw.rpartition(":")[2])
    return raw


def _checked(make, section, origin, values):
    """make(**values), its OptionError said in the file's terms."""
    try:
        return make(**values)
    except OptionError as e:
        option, raw = origin.get(e.option, (_option_name(e.option, section), None))
        # the file's own text, unless the error names one item of it (a field, an interface)
        value = e.value if isinstance(e.value, str) or raw is None else raw
        raise ConfigError(section=section.label, option=option, value=value,
                          allowed=e.allowed) from None


def _option_name(key, section):
    spec = SECTION_TYPES.get(section.type, {})
    return next((option for option, (k, _) in spec.items() if k == key), key)



def _has_control_characters(text):
    return any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in text)


def _is_device_name(name):
    """Linux's dev_valid_name(): what a device (or netifd interface) can be called."""
    return (isinstance(name, str) and 0 < len(name.encode()) < IFNAMSIZ
            and name not in (".", "..") and re.fullmatch(r"[!-~]+", name) is not None
            and "/" not in name and ":" not in name)


def _is_ip_address(text):
    return is_ip_address(text)   # as ipaddress.ip_address reads it (addresses.py)


def _is_host(text):
    if _is_ip_address(text):
        return True
    labels = (text[:-1] if text.endswith(".") else text).split(".")
    return (len(text) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit())   # 192.0.2.300 is a bad address, not a name

