"""addresses.py reads IP literals as ipaddress.ip_address does (the daemon
keeps no ipaddress module): the same answer for each text, and the same bytes."""

import ipaddress
import random

import pytest

from flowprobe.addresses import is_ip_address, packed_address

EDGES = ["1.2.3.4", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.02.3.4", "00.0.0.0",
         "256.1.1.1", "1.2.3", "1.2.3.4.5", "0x1.2.3.4", " 1.2.3.4", "1.2.3.4 ", "",
         "::", "::1", "1::", "01:2::3", "00001::", "1::2::3", "1:2:3:4:5:6:7:8",
         "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3.4", "::ffff:01.2.3.4", "::1.2.3.4",
         "1:2:3:4:5:6:1.2.3.4", "fe80::1%eth0", "fe80::1%", "fe80::1%a%b", "1.2.3.4%eth0",
         "FE80::ABCD", "g::1", "1.2.3.4\0", "::1\0", "١.٢.٣.٤", "localhost",
         "collector.example", "[::1]", "1.2.3.-4", "+1.2.3.4"]


def reference(text):
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return None


def ours(text):
    try:
        return packed_address(text)
    except ValueError:
        return None


@pytest.mark.parametrize("text", EDGES)
def test_the_edges_read_as_ipaddress_reads_them(text):
    assert ours(text) == reference(text)
    assert is_ip_address(text) == (reference(text) is not None)


def test_random_texts_made_of_address_characters_read_the_same():
    rng = random.Random(18)
    alphabet = "0123456789abcdefABCDEF:.%"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        assert ours(text) == reference(text), text


def test_mutated_real_addresses_read_the_same():
    rng = random.Random(6)
    for _ in range(20000):
        if rng.random() < 0.5:
            text = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        else:
            text = str(ipaddress.IPv6Address(rng.getrandbits(128) >> rng.choice((0, 64, 96))))
        chars = list(text)
        for _ in range(rng.randint(0, 2)):
            where = rng.randrange(len(chars) + 1)
            action = rng.random()
            if action < 0.4:
                chars.insert(where, rng.choice("0:.%1f"))
            elif action < 0.7 and where < len(chars):
                del chars[where]
            elif where < len(chars):
                chars[where] = rng.choice("0:.9a")
        text = "".join(chars)
        assert ours(text) == reference(text), text


def test_not_a_string_is_no_address():
    for value in (None, 16909060, b"1.2.3.4"):
        assert not is_ip_address(value)
