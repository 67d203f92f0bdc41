"""The conntrack source's records in pmacct: the daemon on a masquerading
router (test_conntrack's lab) exports IPFIX biflows and NetFlow v9 to two
nfacctd in the router's namespace.  Per connection, pmacct's forward totals
must equal the client's capture (before NAT), its reverse ones (RFC 5103
counters read as custom primitives) the replies the client saw, and its
post_nat_src_host the router's address (IPv4: pmacct's NAT primitives).
"""

import time

import pytest

from collector_tools import NFACCTD, PMACCT_PRIMITIVES, Nfacctd, missing_tools
from test_conntrack import (  # noqa: F401  (nat_lab is a fixture)
    config_text,
    nat_lab,
    reverse_key,
    skip_reason,
    start_captures,
    stop_captures,
    traffic,
)
from test_daemon_live import Daemon
from test_pmacct import NAT_PRIMITIVES, REVERSE_PRIMITIVES

_reason = skip_reason or missing_tools(NFACCTD)
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"pmacct conntrack: {_reason}")


def connections(entries):
    """Per forward key: [packets, bytes, reverse packets, reverse bytes, post-NAT source]."""
    totals = {}
    for e in entries:
        protocol = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58}.get(e["ip_proto"],
                                                                       e["ip_proto"])
        version = 6 if ":" in e["ip_src"] else 4
        key = (version, int(protocol), e["ip_src"], e["ip_dst"], e["port_src"], e["port_dst"])
        entry = totals.setdefault(key, [0, 0, 0, 0, None])
        entry[0] += e["packets"]
        entry[1] += e["bytes"]
        entry[2] += int(e.get("reverse_packets", 0))
        entry[3] += int(e.get("reverse_octets", 0))
        entry[4] = e.get("post_nat_ip_src") or entry[4]
    return totals


def test_pmacct_stores_the_conntrack_sources_connections(nat_lab, tmp_path):  # noqa: F811
    lab = nat_lab
    primitives = PMACCT_PRIMITIVES + NAT_PRIMITIVES
    with Nfacctd(port=2055, netns=lab.router, primitives=primitives,
                 custom_primitives=REVERSE_PRIMITIVES) as biflow, \
            Nfacctd(port=2056, netns=lab.router, primitives=primitives) as v9:
        captures = start_captures(lab, tmp_path)
        daemon = Daemon(lab, tmp_path, config_text(str(tmp_path / "control.sock")))
        daemon.wait_until(lambda s: s["conntrack"] and s["conntrack"]["running"])
        traffic(lab)
        time.sleep(4)   # DESTROY events of the short connections
        daemon.stop()
        client, _ = stop_captures(captures)
        biflow_entries, v9_entries = biflow.raw_flows(), v9.raw_flows()
        complaints = biflow.complaints() + v9.complaints()
    assert complaints == []
    exported = connections(biflow_entries)
    wanted = [k for k in client if k[3] in (lab.server4, lab.server6)]
    assert len(wanted) >= 6, client   # HTTP, ping, UDP, each over IPv4 and IPv6
    problems = []
    for key in wanted:
        got = exported.get(key)
        if got is None:
            problems.append(f"{key}: not in pmacct")
            continue
        reply = client.get(reverse_key(key), (0, 0))
        if (got[0], got[1]) != client[key] or (got[2], got[3]) != reply:
            problems.append(f"{key}: pmacct {got[:4]}, client saw {client[key]} and {reply}")
        if key[0] == 4 and got[4] != lab.router_server4:
            problems.append(f"{key}: post-NAT source {got[4]}, expected {lab.router_server4}")
    assert problems == [], "\n".join(problems)
    # NetFlow v9 carries the translation too (fields 225-228)
    assert any(e.get("post_nat_ip_src") == lab.router_server4 for e in v9_entries), \
        v9_entries[:2]
