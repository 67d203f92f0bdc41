"""IP address literals read the way ipaddress.ip_address reads them, by the
C library's inet_pton: the daemon checks a few addresses at start (config,
collectors, leases) and would otherwise keep the ipaddress module (some
0.3 MB) all its life.  tests/test_addresses.py holds the two to the same
answers."""

import socket


def packed_address(text):
    """The 4 or 16 bytes of an IPv4 or IPv6 literal (an IPv6 scope,
    "%eth0", is allowed and left out), else ValueError."""
    if isinstance(text, str):
        if ":" in text:
            address, percent, scope = text.partition("%")
            if not percent or (scope and "%" not in scope):
                try:
                    return socket.inet_pton(socket.AF_INET6, address)
                except (OSError, ValueError):
                    pass
        else:
            try:
                return socket.inet_pton(socket.AF_INET, text)
            except (OSError, ValueError):
                pass
    raise ValueError(f"{text!r} does not appear to be an IPv4 or IPv6 address")


def is_ip_address(text):
    try:
        packed_address(text)
    except ValueError:
        return False
    return True
