"""Collector outages on the live daemon: both collectors (IPFIX over TCP)
are down while traffic goes on, then come back.  The one with a spool gets
every record, in order, with no gap in sequence numbers; the one without
gets what its queue held and the rest is counted as not sent.  Metering is
not affected.  (An outage of seconds stands in for one of minutes: nothing
in the daemon depends on how long it lasts, only on how much is waiting.)

Needs root, ip netns, tcpdump and tshark; skipped otherwise.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from collector_tools import NFCAPD, NFDUMP, TSHARK, Nfcapd, missing_tools, tshark_decode
from netlab import RouterLab, missing
from test_daemon_live import Daemon, all_up, settle

SPOOLED, QUEUE_ONLY = 4740, 4741
OUTAGE_S = 6
SINK = ("import socket, sys, threading\n"
        "def drain(c):\n"
        "    while c.recv(1 << 16): pass\n"
        "servers = []\n"
        "for port in map(int, sys.argv[1:]):\n"
        "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    s.bind(('127.0.0.1', port)); s.listen(); servers.append(s)\n"
        "def serve(s):\n"
        "    while True: threading.Thread(target=drain, args=(s.accept()[0],)).start()\n"
        "for s in servers: threading.Thread(target=serve, args=(s,)).start()\n")

skip_reason = missing() or missing_tools(TSHARK)
pytestmark = pytest.mark.skipif(skip_reason is not None, reason=f"outage: {skip_reason}")


def main_section(socket_path, spool_dir):
    return ["config flowprobe 'main'", "\toption enabled '1'", "\tlist interface 'r-cli'",
            f"\toption control_socket '{socket_path}'", f"\toption spool_dir '{spool_dir}'",
            "\toption idle_timeout '1'", "\toption filter 'udp or icmp'"]


def config_text(socket_path, spool_dir):
    return "\n".join(main_section(socket_path, spool_dir) + [
        "config collector 'spooled'", "\toption transport 'tcp'", "\toption host '127.0.0.1'",
        f"\toption port '{SPOOLED}'", "\toption queue_limit '2'", "\toption spool_kb '4096'",
        "config collector 'queue_only'", "\toption transport 'tcp'",
        "\toption host '127.0.0.1'", f"\toption port '{QUEUE_ONLY}'",
        "\toption queue_limit '2'", ""])


def data_records(pcap, port):
    """(records, sequence problems) of what tshark finds in the TCP stream to port."""
    records, problems, expected = 0, [], None
    for message in tshark_decode(pcap, port, transport="tcp"):
        data = sum(1 for r in message["records"] if r["kind"] == "data")
        # options data records (interface names, statistics) take sequence
        # numbers too (RFC 7011 3.1)
        numbered = data + sum(1 for r in message["records"] if r["kind"] == "options")
        templates_only = not message["records"]
        if expected is not None and message["sequence"] != expected and not templates_only:
            problems.append((message["frame"], expected, message["sequence"]))
        expected = message["sequence"] + numbered
        records += data
    return records, problems


def udp_flows(lab, count, port_base):
    lab.run(lab.client, sys.executable, "-c",
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for n in range({count}):\n"
            f"    s.sendto(b'x' * 100, ('{lab.server4}', {port_base} + n)); time.sleep(0.01)\n")


def test_collectors_down_then_back(tmp_path):
    spool_dir = tempfile.mkdtemp(prefix="flowprobe-spool-")
    with RouterLab() as lab:
        pcap = tmp_path / "export.pcap"
        recorder = lab.popen(lab.router, "tcpdump", "-i", "lo", "-U", "-n", "-w", str(pcap),
                             f"tcp port {SPOOLED} or tcp port {QUEUE_ONLY}",
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon = Daemon(lab, tmp_path, config_text(str(tmp_path / "control.sock"), spool_dir))
        daemon.wait_until(all_up)
        time.sleep(1)
        began = time.monotonic()
        udp_flows(lab, int(OUTAGE_S * 80), 20000)   # the collectors are not there yet
        during = daemon.status()
        sink = lab.popen(lab.router, sys.executable, "-c", SINK, str(SPOOLED), str(QUEUE_ONLY))
        udp_flows(lab, 200, 30000)                   # and traffic goes on after they are back
        time.sleep(2)   # the last idle flows end and leave

        def delivered(status):
            spooled = status["collectors"][0]
            return spooled["connected"] and not spooled["queued"] \
                and not spooled["spooled_messages"]
        daemon.wait_until(delivered, timeout=30)
        final = daemon.status()
        daemon.stop()
        settle(pcap)   # tcpdump drops what it has not written when it exits
        sink.terminate()
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(10)
    outage_s = time.monotonic() - began
    spooled, queue_only = final["collectors"]
    meter = final["meter"]
    drained = meter["records_drained"]
    got_spooled, gaps_spooled = data_records(pcap, SPOOLED)
    got_queue_only, _ = data_records(pcap, QUEUE_ONLY)
    print(f"outage of {outage_s:.0f} s: {drained} records; spooled collector: "
          f"{during['collectors'][0]['records_spooled']} spooled, {got_spooled} received; "
          f"queue-only collector: {got_queue_only} received, "
          f"{queue_only['records_not_sent']} counted as not sent")
    # metering went on as if nothing happened
    assert meter["packets_read"] == meter["packets_metered"]
    assert final["interfaces"][0]["pcap_dropped"] == 0 and drained >= 600
    # every record the daemon made (flushed at the stop too): the spooled collector
    # got them all, in order; for the other, what did not arrive was counted
    stopped = re.search(r"stopped: .*; (\d+) records, (\d+) not sent", daemon.output())
    records, not_sent = int(stopped[1]), int(stopped[2])
    assert during["collectors"][0]["records_spooled"] > 0
    assert spooled["records_not_sent"] == 0 and gaps_spooled == []
    assert got_spooled == records >= drained
    assert queue_only["records_not_sent"] > 0
    assert got_queue_only + not_sent == records
    assert not list(Path(spool_dir).glob("*.spool")), "the spool file outlived the daemon"
    os.rmdir(spool_dir)


def stop_line(output):
    """(records, not sent) from the daemon's last log line."""
    stopped = re.search(r"stopped: .*; (\d+) records, (\d+) not sent", output)
    assert stopped, output
    return int(stopped[1]), int(stopped[2])


UDP_PORT = 4750


def udp_config(socket_path, spool_dir):
    return "\n".join(main_section(socket_path, spool_dir) + [
        "config collector 'nfcapd'", "\toption protocol 'ipfix'", "\toption host '127.0.0.1'",
        f"\toption port '{UDP_PORT}'", "\toption queue_limit '2'", "\toption spool_kb '4096'",
        ""])


@pytest.mark.skipif(missing_tools(NFCAPD, NFDUMP) is not None, reason="needs nfcapd, nfdump")
def test_a_refused_udp_collector_is_down_not_sent_to_and_gets_everything_back(tmp_path):
    """Over UDP a closed port answers with ICMP: the daemon must not count
    what it sends into that as sent; with a spool, the collector gets every
    record once it is back (before: 0 of them, and all 'sent')."""
    spool_dir = tempfile.mkdtemp(prefix="flowprobe-spool-")
    with RouterLab() as lab:
        daemon = Daemon(lab, tmp_path, udp_config(str(tmp_path / "control.sock"), spool_dir))
        daemon.wait_until(all_up)
        udp_flows(lab, 300, 20000)                   # nobody listens on the port yet
        time.sleep(2)
        during = daemon.status()["collectors"][0]
        with Nfcapd(netns=lab.router, port=UDP_PORT) as collector:
            udp_flows(lab, 100, 30000)
            time.sleep(2)

            def delivered(status):
                c = status["collectors"][0]
                return not c["down"] and not c["queued"] and not c["spooled_messages"]
            daemon.wait_until(delivered, timeout=90)   # the back-off may have reached 60 s
            daemon.stop()
            collector.drain()
            got = len(collector.flows())
    records, not_sent = stop_line(daemon.output())
    print(f"UDP outage: {records} records, {during['records_spooled']} spooled while down, "
          f"{during['records_refused']} refused, {got} received by nfcapd, {not_sent} not sent")
    assert during["down"] and during["records_sent"] == 0
    assert during["records_spooled"] > 0
    assert got + not_sent == records and got >= records - during["records_refused"]
    os.rmdir(spool_dir)


def test_a_full_spool_filesystem_while_the_collector_returns_kills_nothing(tmp_path):
    """The spool on a 16 KB tmpfs, the TCP collector refused, then back:
    every record is delivered or counted as not sent, and the daemon stops
    cleanly (before: ENOSPC escaped the loop, exit 1, no 'stopped:' line)."""
    spool_dir = Path(tempfile.mkdtemp(prefix="flowprobe-tiny-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(spool_dir)],
                   check=True)
    try:
        with RouterLab() as lab:
            pcap = tmp_path / "export.pcap"
            recorder = lab.popen(lab.router, "tcpdump", "-i", "lo", "-U", "-n", "-w", str(pcap),
                                 f"tcp port {SPOOLED}", stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            text = config_text(str(tmp_path / "control.sock"), spool_dir)
            text = text.replace("option spool_kb '4096'", "option spool_kb '1024'")
            daemon = Daemon(lab, tmp_path, text)
            daemon.wait_until(all_up)
            udp_flows(lab, 800, 20000)               # far beyond 16 KB of spool
            time.sleep(2)                            # the last of them end and are exported
            during = daemon.status()
            sink = lab.popen(lab.router, sys.executable, "-c", SINK, str(SPOOLED),
                             str(QUEUE_ONLY))
            udp_flows(lab, 100, 30000)
            time.sleep(2)

            def delivered(status):
                c = status["collectors"][0]
                return c["connected"] and not c["queued"] and not c["spooled_messages"]
            daemon.wait_until(delivered, timeout=30)
            final = daemon.status()
            daemon.stop()
            settle(pcap)
            sink.terminate()
            recorder.send_signal(signal.SIGTERM)
            recorder.wait(10)
    finally:
        subprocess.run(["umount", "-l", str(spool_dir)], check=False)
        spool_dir.rmdir()
    records, _ = stop_line(daemon.output())
    got, _ = data_records(pcap, SPOOLED)
    spooled = final["collectors"][0]
    print(f"full spool filesystem: {records} records, "
          f"{during['collectors'][0]['spool_write_errors']} spool writes failed, {got} "
          f"received, {spooled['records_not_sent']} not sent")
    assert during["collectors"][0]["spool_write_errors"] > 0
    assert got + spooled["records_not_sent"] == records
    assert final["loop_errors"] == 0 and "Traceback" not in daemon.output()
