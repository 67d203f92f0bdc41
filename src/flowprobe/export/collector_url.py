"""A collector URL (`flowprobe read --export ipfix://HOST:PORT?options`) taken
apart as urllib.parse's urlsplit and parse_qs take it apart, without urllib:
on OpenWrt urllib comes in python3-urllib together with the email package,
flash nothing else in flowprobe needs.  tests/test_collector_url.py holds
this to urllib's answers on generated URLs.

One difference, on purpose: a host that is not ASCII is refused (urllib
checks it with unicodedata; no collector has such a name).
"""

SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
C0_CONTROL_OR_SPACE = "".join(map(chr, range(0x21)))   # WHATWG: stripped in front
REMOVED = ("\t", "\r", "\n")                          # removed anywhere (bpo-43882)
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class SplitUrl:
    def __init__(self, scheme, netloc, query):
        self.scheme, self.netloc, self.query = scheme, netloc, query

    def _hostinfo(self):
        hostinfo = self.netloc.rpartition("@")[2]
        _, bracket, bracketed = hostinfo.partition("[")
        if bracket:
            hostname, _, port = bracketed.partition("]")
            port = port.partition(":")[2]
        else:
            hostname, _, port = hostinfo.partition(":")
        return hostname, port or None

    @property
    def hostname(self):
        hostname = self._hostinfo()[0]
        if not hostname:
            return None
        hostname, percent, zone = hostname.partition("%")   # an IPv6 zone keeps its case
        return hostname.lower() + percent + zone

    @property
    def port(self):
        """The port as a number, None if none; ValueError if it is no port."""
        port = self._hostinfo()[1]
        if port is None:
            return None
        if not (port.isdigit() and port.isascii()):
            raise ValueError(f"Port could not be cast to integer value as {port!r}")
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError("Port out of range 0-65535")
        return number


def split(url):
    """urlsplit's scheme, netloc and query; ValueError for a malformed host."""
    url = url.lstrip(C0_CONTROL_OR_SPACE)
    for character in REMOVED:
        url = url.replace(character, "")
    scheme = netloc = query = ""
    colon = url.find(":")
    if (colon > 0 and url[0].isascii() and url[0].isalpha()
            and all(c in SCHEME_CHARS for c in url[:colon])):
        scheme, url = url[:colon].lower(), url[colon + 1:]
    if url[:2] == "//":
        end = len(url)
        for delimiter in "/?#":
            found = url.find(delimiter, 2)
            if found >= 0:
                end = min(end, found)
        netloc, url = url[2:end], url[end:]
        if ("[" in netloc) != ("]" in netloc):
            raise ValueError("Invalid IPv6 URL")
        if "[" in netloc:
            _check_bracketed_host(netloc.partition("[")[2].partition("]")[0])
        if not netloc.isascii():
            raise ValueError("a collector's host is ASCII")
    url = url.split("#", 1)[0]
    if "?" in url:
        query = url.split("?", 1)[1]
    return SplitUrl(scheme, netloc, query)


def _check_bracketed_host(host):
    if host.startswith("v"):   # RFC 3986 IPvFuture
        import re
        if not re.match(r"\Av[a-fA-F0-9]+\..+\Z", host):
            raise ValueError("IPvFuture address is invalid")
        return
    import ipaddress
    if ipaddress.ip_address(host).version == 4:   # ValueError when it is none
        raise ValueError("An IPv4 address cannot be in brackets")


def parse_query(query):
    """parse_qs(query, keep_blank_values=True): {name: [values in order]}."""
    found = {}
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        found.setdefault(_unquote_plus(name), []).append(_unquote_plus(value))
    return found


def _unquote_plus(text):
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    # %XX escapes are decoded in the ASCII runs only, as UTF-8 (errors replaced)
    pieces, start = [], 0
    while start < len(text):
        ascii_run = text[start] < "\x80"
        end = start
        while end < len(text) and (text[end] < "\x80") == ascii_run:
            end += 1
        chunk = text[start:end]
        pieces.append(_unquote_ascii(chunk) if ascii_run else chunk)
        start = end
    return "".join(pieces)


def _unquote_ascii(chunk):
    items = chunk.encode("ascii").split(b"%")
    out = bytearray(items[0])
    for item in items[1:]:
        if len(item) >= 2 and item[0] in HEX_DIGITS and item[1] in HEX_DIGITS:
            out.append(int(item[:2], 16))
            out += item[2:]
        else:
            out += b"%" + item
    return out.decode("utf-8", "replace")
