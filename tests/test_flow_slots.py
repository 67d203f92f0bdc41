"""What a flow slot costs, and the IPv6 address pool's bound and overflow.

An IPv4 flow slot is the 64-byte entry and nothing else (the hash index lives
in the entries); IPv6 flows take their addresses from a pool of their own
(cmeter/flow_addr6.h): half of max_flows (option max_flows_ipv6), at least
min(max_flows, 4096), where the table's overflow policy applies to IPv6 flows alone, counted.
"""

import ipaddress
import struct

import pytest

from captures import START_US, assert_conserved
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings, SettingsError

ETHER_IPV4 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
ETHER_IPV6 = ETHER_IPV4[:12] + b"\x86\xdd"
MAX_FLOWS = 20_000            # the pool: half, 10000 IPv6 flows
POOL = MAX_FLOWS // 2


def udp4(host, sport):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                     bytes([10, 0, host >> 8, host & 0xFF]), bytes([10, 9, 9, 9]))
    return ETHER_IPV4 + ip + struct.pack("!HHHH", sport, 53, 8, 0)


def udp6(host, sport=5353):
    src = bytes.fromhex("fd000000000000000000000000") + struct.pack("!I", host)[1:]
    dst = bytes.fromhex("fd000000000000000000000000000099")
    ip = struct.pack("!IHBB", 6 << 28, 8, 17, 64) + src + dst
    return ETHER_IPV6 + ip + struct.pack("!HHHH", sport, 53, 8, 0)


def meter(**settings):
    return Meter(MeterSettings(hash_seed=1, **settings))


def feed(m, frames, at_us=0):
    """A frame a microsecond: every flow stays well inside its timeouts."""
    for n, data in enumerate(frames):
        m.process_frame(data, 1, START_US + at_us + n)


def finish(m, drained=()):
    """Every record, those drained before included; nothing lost."""
    m.flush()
    records = list(drained) + m.drain()
    assert_conserved(records, m.counters())
    return records


def test_an_ipv4_flow_slot_costs_64_bytes_all_told():
    # Between these sizes the IPv6 pool (4096), the export reserve (256) and
    # the fragment table stay the same: the difference is the slots, and the
    # TCP end table's state for every 64 flows (cmeter/tcp_end.h), about a byte.
    small, big = meter(max_flows=8192, max_flows_ipv6=4096), meter(max_flows=16384,
                                                                     max_flows_ipv6=4096)
    assert 64 <= (big.memory_bytes - small.memory_bytes) / 8192 < 66
    assert small.counters()["ipv6_flows_max"] == big.counters()["ipv6_flows_max"] == 4096


@pytest.mark.parametrize("max_flows, pool", [(1, 1), (12, 12), (4096, 4096), (8192, 4096),
                                             (16384, 8192), (65536, 32768)])
def test_the_ipv6_pool_takes_half_of_max_flows_and_never_less_than_a_small_table(
        max_flows, pool):
    assert meter(max_flows=max_flows).counters()["ipv6_flows_max"] == pool


@pytest.mark.parametrize("wanted, pool", [(1, 1), (5000, 5000), (65536, 65536)])
def test_max_flows_ipv6_sets_the_pool_within_max_flows(wanted, pool):
    m = meter(max_flows=65536, max_flows_ipv6=wanted)
    assert m.counters()["ipv6_flows_max"] == pool
    # every IPv6 slot costs the same 36 bytes, whatever the split
    assert (m.memory_bytes - meter(max_flows=65536, max_flows_ipv6=1).memory_bytes
            == 36 * (wanted - 1))


def test_max_flows_ipv6_above_max_flows_is_refused_by_name():
    with pytest.raises(SettingsError, match="max_flows_ipv6"):
        MeterSettings(max_flows=1000, max_flows_ipv6=1001)


def test_a_full_ipv6_pool_refuses_new_ipv6_flows_counted_while_ipv4_flows_go_on():
    m = meter(max_flows=MAX_FLOWS, overflow_policy="refuse")
    feed(m, [udp6(host) for host in range(POOL + 3)])
    feed(m, [udp4(host, 1000) for host in range(100)], at_us=POOL + 3)
    feed(m, [udp6(0)], at_us=POOL + 103)  # an existing IPv6 flow still counts
    counters = m.counters()
    assert counters["ipv6_flows_refused"] == 3
    assert counters["dropped_flow_table_full"] == 3
    assert counters["flows_active"] == POOL + 100
    records = finish(m)
    assert len(records) == POOL + 100
    assert sum(r["packets"] for r in records) == POOL + 101


def test_a_full_ipv6_pool_evicts_the_oldest_ipv6_flow_and_loses_no_packet():
    m = meter(max_flows=MAX_FLOWS, overflow_policy="evict")
    feed(m, [udp4(host, 1000) for host in range(10)])  # older than every IPv6 flow
    feed(m, [udp6(host) for host in range(POOL + 2)], at_us=10)
    counters = m.counters()
    assert counters["ipv6_flows_evicted"] == counters["flows_evicted"] == 2
    assert counters["dropped_flow_table_full"] == 0
    evicted = m.drain()
    assert sorted(r["src_addr"] for r in evicted) == ["fd00::", "fd00::1"]
    assert {r["end_reason"] for r in evicted} == {"lack_of_resources"}
    # drained, their addresses are free again: two more IPv6 flows fit without eviction
    feed(m, [udp6(host, sport=9) for host in range(2)], at_us=POOL + 20)
    assert m.counters()["ipv6_flows_evicted"] == 4  # the pool holds POOL active flows
    records = finish(m, evicted)
    assert sum(r["packets"] for r in records) == 10 + POOL + 4
    assert {r["src_addr"] for r in records if r["ip_version"] == 4} == {
        f"10.0.0.{host}" for host in range(10)}


def test_evict_never_refuses_an_ipv6_flow_even_behind_many_older_ipv4_flows():
    # No IPv6 flow near the lists' oldest ends: the pool's clock hand finds one.
    m = meter(max_flows=MAX_FLOWS, overflow_policy="evict")
    feed(m, [udp4(host, 1000) for host in range(1000)])
    feed(m, [udp6(host) for host in range(POOL + 5)], at_us=1000)
    counters = m.counters()
    assert counters["ipv6_flows_evicted"] == 5 and counters["ipv6_flows_refused"] == 0
    assert counters["dropped_flow_table_full"] == 0
    records = finish(m)
    assert sum(r["packets"] for r in records) == 1000 + POOL + 5


def test_addresses_survive_the_pool_reusing_slots():
    # Evicted and drained over and over: every record names its own addresses.
    m = meter(max_flows=MAX_FLOWS, overflow_policy="evict")
    hosts = range(3 * POOL)
    drained = []
    for start in range(0, len(hosts), 200):  # drained as the daemon does, in time
        feed(m, [udp6(host) for host in hosts[start:start + 200]], at_us=start)
        drained += m.drain()
    records = finish(m, drained)
    assert m.counters()["ipv6_flows_evicted"] == 2 * POOL
    assert sorted(r["src_addr"] for r in records) == sorted(
        str(ipaddress.IPv6Address(udp6(host)[22:38])) for host in hosts)
