"""The device table (enrich/devices.py): names and MACs for addresses from
dnsmasq's and odhcpd's lease files, the static hosts of /etc/config/dhcp
and the kernel's neighbour table; files re-read when they change, never
followed through a symlink, never read past their bound; the neighbour
table bounded.

The lease files here are written in each daemon's format by the test (the
live test in test_enrich_live.py has a real dnsmasq write one); the
neighbour table is a real kernel's, in a namespace of our own (root needed
for that part, skipped otherwise).
"""

import os
import select

import pytest

from enrich_lab import UplinkRouter
from flowprobe.enrich import devices as devices_module
from flowprobe.enrich.devices import DeviceTable
from netlab import missing

DNSMASQ = """\
1764700000 aa:bb:cc:00:00:01 192.168.7.20 laptop 01:aa:bb:cc:00:00:01
1764700000 aa:bb:cc:00:00:02 192.168.7.21 * *
duid 00:01:00:01:2c:00:00:01:aa:bb:cc:00:00:ff
1764700000 305419896 fd07::20 laptop 00:01:00:01:2c:00:00:01:aa:bb:cc:00:00:01
"""
ODHCPD = """\
# br-lan 000100012c000001aabbcc000003 4d2a8f3b phone 1764700000 d 128 fd07::d/128 fd08::d/128
# br-lan 000100012c000001aabbcc000004 4d2a8f3c - 1764700000 e 128 fd07::e/128
fd07::d phone
"""
HOSTS = """\
config dnsmasq
\toption domain 'lan'

config host
\toption name 'printer'
\toption mac 'AA:BB:CC:00:00:02'
\toption ip '192.168.7.21'

config host
\toption name 'tv'
\tlist mac 'aa:bb:cc:00:00:05'
"""


@pytest.fixture
def files(tmp_path):
    paths = {name: tmp_path / name for name in ("dhcp.leases", "odhcpd", "dhcp")}
    paths["dhcp.leases"].write_text(DNSMASQ)
    paths["odhcpd"].write_text(ODHCPD)
    paths["dhcp"].write_text(HOSTS)
    return paths


def table(files, **options):
    return DeviceTable(lease_file=str(files["dhcp.leases"]),
                       odhcpd_lease_file=str(files["odhcpd"]),
                       hosts_config=str(files["dhcp"]), neighbours=False, **options)


def test_leases_and_static_hosts_name_addresses(files):
    devices = table(files)
    assert devices.device("192.168.7.20") == {"name": "laptop", "mac": "aa:bb:cc:00:00:01"}
    assert devices.device("fd07::20") == {"name": "laptop"}          # dnsmasq's DHCPv6 line
    assert devices.device("fd07::d") == {"name": "phone"}            # odhcpd
    assert devices.device("fd08::d") == {"name": "phone"}
    assert devices.device("fd07::e") is None                         # odhcpd's '-': no name
    # a lease without a name gets the static host's, by MAC
    assert devices.device("192.168.7.21") == {"name": "printer", "mac": "aa:bb:cc:00:00:02"}
    assert devices.device("192.168.7.99") is None
    assert devices.device("not an address") is None


def test_a_changed_lease_file_is_read_again_at_the_next_refresh(files):
    devices = table(files)
    files["dhcp.leases"].write_text(DNSMASQ.replace("laptop", "desktop", 1) + "\n")
    devices.refresh()
    assert devices.device("192.168.7.20")["name"] == "desktop"
    files["dhcp.leases"].unlink()
    devices.refresh()
    assert devices.device("192.168.7.20") is None


def test_flow_lists_get_the_devices_of_both_ends(files):
    devices = table(files)
    flows = devices.annotate([{"src_addr": "192.168.7.20", "dst_addr": "198.51.100.7"}])
    assert flows == [{"src_addr": "192.168.7.20", "dst_addr": "198.51.100.7",
                      "src_device": {"name": "laptop", "mac": "aa:bb:cc:00:00:01"}}]


def test_a_symlink_or_a_huge_file_is_refused_and_the_rest_goes_on(files, tmp_path, caplog,
                                                                    monkeypatch):
    """/tmp is anyone's: a link planted where the lease file will be must
    not make the daemon read (and show) another file."""
    secret = tmp_path / "secret"
    secret.write_text("1764700000 aa:bb:cc:00:00:09 192.168.7.9 secret-name *\n")
    files["dhcp.leases"].unlink()
    os.symlink(secret, files["dhcp.leases"])
    devices = table(files)
    assert devices.device("192.168.7.9") is None
    assert devices.device("fd07::d") == {"name": "phone"}
    [source] = [s for s in devices.stats()["device_sources"] if s["error"]]
    assert "dhcp.leases" in source["error"]
    assert "not used" in caplog.text
    monkeypatch.setattr(devices_module, "MAX_FILE_BYTES", 64)
    files["odhcpd"].write_text(ODHCPD * 10)
    devices.refresh()
    assert devices.device("fd07::d") is None
    assert any("larger than" in (s["error"] or "") for s in devices.stats()["device_sources"])


def test_a_broken_static_hosts_file_leaves_the_leases_working(files):
    files["dhcp"].write_text("config host\n\toption name 'x\n")
    devices = table(files)
    assert devices.device("192.168.7.20")["name"] == "laptop"
    assert any(s["error"] for s in devices.stats()["device_sources"])


@pytest.mark.skipif(missing() is not None, reason=f"neighbour table: {missing()}")
def test_the_neighbour_table_joins_an_ipv6_address_to_its_device_by_mac(files):
    with UplinkRouter() as router:
        with router.inside():
            devices = DeviceTable(lease_file=str(files["dhcp.leases"]),
                                  odhcpd_lease_file=str(files["odhcpd"]),
                                  hosts_config=str(files["dhcp"]), capacity=3)
        try:
            # a privacy address of the laptop, seen by the kernel on the LAN
            router.ip("neigh", "add", "fd07::1234:5678:9abc:def0", "lladdr",
                      "aa:bb:cc:00:00:01", "dev", "lan0", "nud", "reachable")
            router.ip("neigh", "add", "192.168.7.50", "lladdr", "aa:bb:cc:00:00:05", "dev",
                      "lan0", "nud", "permanent")
            # an all-zero address (loopback, NOARP links) names no device
            router.ip("neigh", "add", "192.168.7.77", "lladdr", "00:00:00:00:00:00", "dev",
                      "lan0", "nud", "noarp")

            def read():
                while select.select([devices.socket], [], [], 0.5)[0]:
                    devices.read_neighbours()

            read()
            assert devices.device("fd07::1234:5678:9abc:def0") == {
                "name": "laptop", "mac": "aa:bb:cc:00:00:01"}
            assert devices.device("192.168.7.50") == {"name": "tv", "mac": "aa:bb:cc:00:00:05"}
            assert devices.device("192.168.7.77") is None
            router.ip("neigh", "del", "192.168.7.50", "dev", "lan0")
            read()
            assert devices.device("192.168.7.50") is None
            # bounded: the oldest leave, counted
            for n in range(1, 6):
                router.ip("neigh", "add", f"192.168.7.{60 + n}", "lladdr",
                          f"aa:bb:cc:00:01:0{n}", "dev", "lan0", "nud", "permanent")
            read()
            assert len(devices.neighbours) == 3
            assert devices.counters["neighbours_evicted"] >= 3
            assert devices.device("192.168.7.65") == {"mac": "aa:bb:cc:00:01:05"}
        finally:
            devices.close()


def test_flowprobe_flows_shows_the_device_column_only_when_devices_are_known():
    from flowprobe.cli.flows import format_flows
    flow = {"protocol": 17, "src_addr": "192.168.7.20", "dst_addr": "198.51.100.7",
            "src_port": 5000, "dst_port": 53, "packets": 3, "octets": 300, "age_ms": 1000,
            "ifindex": 2, "interface": "lan0", "ip_version": 4}
    plain = format_flows({"flows": [flow], "matched": 1, "active": 1})
    assert "DEVICE" not in plain
    named = format_flows({"flows": [dict(flow, src_device={"name": "laptop", "mac": "x"}),
                                    dict(flow, dst_device={"mac": "aa:bb:cc:00:00:01"}), flow],
                          "matched": 3, "active": 3})
    lines = named.splitlines()
    assert lines[0].split()[-1] == "DEVICE"
    assert [line.split()[-1] for line in lines[1:4]] == ["laptop", "aa:bb:cc:00:00:01", "-"]


def test_flowprobe_status_says_what_enrichment_knows_and_what_it_could_not_read():
    from flowprobe.cli.status import attention, summary
    status = {"version": "x", "running_since": 0, "interfaces": [], "collectors": [],
              "meter": {}, "source": "capture",
              "enrich": {"routes_cached": 12, "records_without_route": 3,
                         "prefix_file": "/etc/asn.txt", "prefixes": 0,
                         "prefix_error": "line 2: not 'prefix/length asn'",
                         "device_sources": [{"path": "/tmp/dhcp.leases", "entries": 0,
                                             "error": "device names: /tmp/dhcp.leases: not "
                                                      "a regular file; not used"}]}}
    assert attention(status) == [
        "prefix table /etc/asn.txt: line 2: not 'prefix/length asn'",
        "device names: /tmp/dhcp.leases: not a regular file; not used"]
    lines, _ = summary(status, 10)
    assert "enrichment  12 routes known, 3 records without one; 0 prefixes" in lines
    del status["enrich"]
    assert not any(line.startswith("enrichment") for line in summary(status, 10)[0])
