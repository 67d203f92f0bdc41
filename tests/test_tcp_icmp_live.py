"""TCP ends and ICMP errors on real stacks: a client, a router and a
server in network namespaces of our own (prefix tci-).  The router's link
to the server has a small MTU: the client's full-size TCP segments (DF, as
Linux sends them) hit it, and the router answers "fragmentation needed"
(IPv4) or "packet too big" (IPv6) — a PMTU black hole for anything that
filters them.  The daemon, capturing on the router's client side, shows the
error count and type on the TCP flow.  When the transfer closes, both
directions' records leave the table at the final ACK: the end grace and
the idle timeouts are an hour, so nothing else could have ended them.

Needs root, ip netns and tcpdump's friends (netlab.missing); skipped otherwise.
"""

import subprocess
import sys
import uuid

import pytest

from flowprobe.control.client import call
from netlab import RouterLab, missing
from test_daemon_live import QUIET, Daemon

skip_reason = missing()
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"tcp/icmp lab: {skip_reason}")

SMALL_MTU = 1280
PORT = 9009
SIZE = 300_000
HOUR = 3600

SERVER = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET6)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('::', {PORT})); s.listen(8)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    n = 0\n"
    "    while True:\n"
    "        d = c.recv(65536)\n"
    "        if not d: break\n"
    "        n += len(d)\n"
    "    c.sendall(str(n).encode()); c.close()\n"
)

CLIENT = (
    "import socket, sys\n"
    "host, size = sys.argv[1], int(sys.argv[2])\n"
    "c = socket.create_connection((host, %d))\n"
    "c.sendall(b'x' * size)\n"
    "c.shutdown(socket.SHUT_WR)\n"
    "print(c.recv(100).decode()); c.close()\n" % PORT
)


class TciLab(RouterLab):
    def __init__(self):
        super().__init__()
        tag = uuid.uuid4().hex[:6]
        self.client, self.router, self.server = (f"tci-c-{tag}", f"tci-r-{tag}", f"tci-s-{tag}")


def config(socket_path, grace=HOUR):
    main = {"enabled": 1, "control_socket": socket_path, "filter": QUIET, "direction": "both",
            "idle_timeout": HOUR, "active_timeout": HOUR, "unanswered_timeout": HOUR,
            "tcp_end_grace": grace, "icmp_errors": 1}
    lines = ["config flowprobe 'main'"]
    lines += [f"\toption {key} '{value}'" for key, value in main.items()]
    lines += ["\tlist interface 'r-cli'"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def lab():
    with TciLab() as lab:
        # the far link is small; the server itself would take full frames
        lab.ip("-n", lab.router, "link", "set", "r-srv", "mtu", str(SMALL_MTU))
        lab.popen(lab.server, sys.executable, "-c", SERVER, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
        yield lab


def tcp_flows(daemon, server):
    flows = call(daemon.socket, "flows", {"protocol": 6, "limit": 100})["flows"]
    return [f for f in flows if server in (f["src_addr"], f["dst_addr"])]


def ended(status, connections):
    return status["meter"]["tcp_ends_by_fin"] >= connections


def send(lab, host):
    done = lab.run(lab.client, sys.executable, "-c", CLIENT, host, str(SIZE), timeout=60)
    assert done.stdout.strip() == str(SIZE)


@pytest.mark.parametrize("family", [4, 6])
def test_pmtu_errors_on_the_tcp_flow_and_the_close_leaves_at_once(lab, tmp_path, family):
    daemon = Daemon(lab, tmp_path, config(str(tmp_path / "control.sock")))
    try:
        daemon.wait_until(lambda s: s["interfaces"] and all(i["up"] for i in s["interfaces"]))
        server = lab.server4 if family == 4 else lab.server6
        # a long-lived connection to look at while it is open: the bulk of
        # the data goes through it, so the errors land on it
        holder = lab.popen(lab.client, sys.executable, "-c",
                           "import socket, sys, time\n"
                           f"c = socket.create_connection(({server!r}, {PORT}))\n"
                           f"c.sendall(b'y' * {SIZE})\n"
                           "sys.stdout.write('sent\\n'); sys.stdout.flush()\n"
                           "sys.stdin.readline()\n"
                           "c.shutdown(socket.SHUT_WR); c.recv(100); c.close()\n",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline() == "sent\n"
        error_type = (3, 4) if family == 4 else (2, 0)

        def errors_on_the_open_flow(status):
            flows = [f for f in tcp_flows(daemon, server) if f["src_addr"] != server]
            return flows and flows[0].get("icmp_errors", 0) >= 1

        try:
            daemon.wait_until(errors_on_the_open_flow)
        except AssertionError:   # say what the meter saw, not only that it did not
            flows = call(daemon.socket, "flows", {"limit": 100})["flows"]
            meter = {k: v for k, v in daemon.status()["meter"].items() if "icmp" in k}
            raise AssertionError(f"no error on the open flow: {flows} {meter}") from None
        (flow,) = [f for f in tcp_flows(daemon, server) if f["src_addr"] != server]
        assert (flow["icmp_error_type"], flow["icmp_error_code"]) == error_type
        meter = daemon.status()["meter"]
        assert meter["icmp_errors_joined"] >= 1

        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
        # the close: FIN both ways, both acknowledged; with an hour's grace
        # only the sequence numbers can have ended the flows
        daemon.wait_until(lambda s: ended(s, 1) and not tcp_flows(daemon, server))
        meter = daemon.status()["meter"]
        assert meter["flows_expired_end_of_flow"] >= 2
        # a second transfer ends the same way, nothing left behind
        send(lab, server)
        # nothing left behind; a segment that crossed the final ACK (a FIN
        # retransmitted on a loaded machine) is absorbed and counted as
        # dropped_tcp_after_end, never a flow of its own
        daemon.wait_until(lambda s: ended(s, 2) and not tcp_flows(daemon, server))
    finally:
        daemon.stop()
