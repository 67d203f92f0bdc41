"""export/collector_url.py against urllib.parse, on generated collector URLs:
the same scheme, host, port (or the same refusal) and the same query; and
store/segments.py's URI quoting against urllib.parse.quote.  urllib is the
oracle here only: flowprobe does not import it (python3-urllib on OpenWrt)."""

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowprobe.export import collector_url
from flowprobe.export.profile import ProfileError, profile_from_url
from flowprobe.store import segments

PIECES = ["ipfix", "IPFIX", "netflow9", "sflow", "://", ":", "//", "/", "?", "#", "&", "=",
          "[", "]", "@", "%", "%41", "%e2%82%ac", "%zz", "+", " ", "\t", "\n", "\x00",
          "::1", "2001:db8::1", "fe80::1%eth0", "v1.x", "127.0.0.1", "4739", "65536", "-1",
          "biflow", "1", "fields", "a,b", "host.example", "Host", "é", "€", "x"]
URLS = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)


def urllib_view(url):
    try:
        parts = urllib.parse.urlsplit(url)
        return ("ok", parts.scheme, parts.netloc, parts.query, parts.hostname, port_of(parts))
    except ValueError:
        return ("refused",)


def own_view(url):
    try:
        parts = collector_url.split(url)
        return ("ok", parts.scheme, parts.netloc, parts.query, parts.hostname, port_of(parts))
    except ValueError:
        return ("refused",)


def port_of(parts):
    try:
        return parts.port
    except ValueError:
        return "bad port"


@settings(max_examples=400, deadline=None)
@given(URLS)
def test_split_agrees_with_urllib(url):
    own, theirs = own_view(url), urllib_view(url)
    if own == ("refused",) and theirs != ("refused",):
        assert not theirs[2].isascii(), url   # the one difference: a host not ASCII
        return
    assert own == theirs, url


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "=", "&", "+", "%", "%41", "%e2%82", "%ac", "%zz",
                                 "é", " ", "biflow", "1"]), max_size=14).map("".join))
def test_query_agrees_with_parse_qs(query):
    assert collector_url.parse_query(query) == urllib.parse.parse_qs(query,
                                                                     keep_blank_values=True)


@given(st.text(max_size=40))
def test_sqlite_paths_quote_as_urllib(path):
    try:
        expected = urllib.parse.quote(path)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            segments.sqlite_uri(path)
        return
    assert segments.sqlite_uri(path) == f"file:{expected}?mode=rw"


def test_a_malformed_host_is_a_profile_error_not_a_traceback():
    for url in ("ipfix://[2001:db8::1:4739", "ipfix://[192.0.2.1]:4739", "ipfix://[zz]:1"):
        with pytest.raises(ProfileError, match="host"):
            profile_from_url(url)
    profile = profile_from_url("ipfix://[2001:DB8::1]:4739?biflow=1&fields=octetDeltaCount%2CpacketDeltaCount")
    assert (profile.host, profile.port, profile.biflow) == ("2001:db8::1", 4739, True)
    assert profile.fields == ("octetDeltaCount", "packetDeltaCount")
