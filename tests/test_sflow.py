"""The sFlow v5 agent and sampled IPFIX / NetFlow v9, judged by real
collectors: tshark decodes every datagram cleanly and finds the capture's
own bytes in each sample; pmacct's sfacctd and nfacctd and nfdump's nfcapd
scale the samples to estimates that equal what was sampled exactly (fixed
seeds) and lie within a stated bound of the truth.

A capture of tools/gen_capture.py's mix (VLANs, IPv6, fragments) is
metered at 1:N through the meter, its sampled headers drained from the
ring and its records, as the daemon does, and handed to the exporter.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from collector_tools import (
    NFCAPD,
    TSHARK,
    DatagramRecorder,
    Nfcapd,
    free_udp_port,
    missing_tools,
    tshark_problems,
)
from flowprobe._cmeter_ffi import ffi
from flowprobe.export.collectors import CollectorProfile, Exporter
from flowprobe.meter import Meter
from flowprobe.settings import MeterSettings

ROOT = Path(__file__).resolve().parent.parent
PACKETS = 20000
NOW_MS = 1_700_000_100_000
SFACCTD, NFACCTD = shutil.which("sfacctd"), shutil.which("nfacctd")
NO_HEADER_DISSECTION = ["sflow.enable_dissection:FALSE"]   # the samples' own packets aside


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("sflow") / "mix.pcap"
    subprocess.run([sys.executable, str(ROOT / "tools/gen_capture.py"), "--packets",
                    str(PACKETS), "--flows", "500", "--seed", "1", "-o", str(path)],
                   check=True, capture_output=True)
    return path


def untagged_unfragmented(frame):
    """What pmacct's sfacctd decodes from a sampled header: it passes over
    double-tagged frames and IPv6 fragments (counted, but the sample lost)."""
    if frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
        return False
    return not (frame[12:14] == b"\x86\xdd" and frame[20] == 44)


@pytest.fixture(scope="module")
def plain_capture(capture, tmp_path_factory):
    """The mix without VLAN tags and IPv6 fragments, for sfacctd's exact sums."""
    from captures import pcapfile
    path = tmp_path_factory.mktemp("sflow") / "plain.pcap"
    _, frames = pcapfile.read(capture)
    frames = [frame for frame in frames if untagged_unfragmented(frame[1])]
    pcapfile.write(path, frames)
    return path, len(frames)


@pytest.fixture(scope="module")
def frames(capture):
    from scapy.utils import RawPcapReader
    return [data for data, _ in RawPcapReader(str(capture))]


@pytest.fixture(scope="module")
def ip_packets(capture):
    """The truth: packets a 1:1 meter takes into flows (the capture's non-IP
    frames are dropped by reason, sampled or not)."""
    meter = Meter(MeterSettings(hash_seed=1))
    for _ in meter.read_file(capture):
        pass
    meter.flush()
    meter.drain()
    return meter.counters()["packets_metered"]


def run(capture, profiles, rate, algorithm="random", seed=5, sampling_interval=None):
    """Meters the capture at 1:rate (ifindex 7) and exports what comes out:
    records to the flow collectors, sampled headers to the sFlow ones.
    Returns (meter, [(pool, frame_length, header)] of every sample)."""
    exporter = Exporter(profiles, boot_ms=NOW_MS - 60_000,
                        sampling_interval=sampling_interval or rate)
    exporter.start(NOW_MS)
    meter = Meter(MeterSettings(hash_seed=1))
    meter.set_sampling(7, rate, algorithm, seed=seed)
    meter.keep_samples(4096)
    samples = []
    meter.exported = {4: [0, 0], 6: [0, 0]}   # packets and octets in records, by IP version

    def drain():
        for batch, count in meter.drain_raw():
            for i in range(count):
                meter.exported[batch[i].ip_version][0] += batch[i].packets
                meter.exported[batch[i].ip_version][1] += batch[i].octets
            exporter.export(batch, count, NOW_MS)
        for batch, count in meter.drain_samples_raw():
            samples.extend((batch[i].sample_pool, batch[i].frame_length,
                            bytes(ffi.buffer(batch[i].header, batch[i].header_length)))
                           for i in range(count))
            exporter.export_samples(batch, count, NOW_MS, {7: 0})
        exporter.pump(0.05)
        return []

    for _ in meter.read_file(capture, 7, drain=drain):
        pass
    meter.flush()
    drain()
    exporter.finish(NOW_MS, timeout_s=5)
    return meter, samples


def sflow(port, **options):
    return CollectorProfile(host="127.0.0.1", port=port, protocol="sflow", counter_interval=0,
                            **options)


def tshark_fields(pcap, port, *fields):
    """One row a datagram: each field's values in order (occurrence=all)."""
    command = [TSHARK, "-n", "-r", str(pcap), "-d", f"udp.port=={port},sflow", "-o",
               NO_HEADER_DISSECTION[0], "-T", "fields", "-E", "occurrence=a", "-E",
               "aggregator=;"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [[value.split(";") if value else [] for value in line.split("\t")]
            for line in out.splitlines()]


# ---- tshark: every datagram decodes, and carries the capture's bytes ----

@pytest.mark.skipif(missing_tools(TSHARK) is not None, reason=f"{missing_tools(TSHARK)}")
@pytest.mark.parametrize("rate", [10, 100])
def test_tshark_decodes_every_datagram_with_the_captured_bytes(capture, frames, tmp_path, rate):
    with DatagramRecorder() as recorder:
        _, samples = run(capture, [sflow(recorder.port, mtu=1400)], rate,
                         "deterministic" if rate == 10 else "random")
        assert recorder.wait(1)
        pcap = recorder.write_pcap(tmp_path / "sflow.pcap")
        datagrams = recorder.received()
    assert all(len(d.data) <= 1400 for d in datagrams)
    assert tshark_problems(pcap, recorder.port, min_severity="note", decoder="sflow",
                           preferences=NO_HEADER_DISSECTION) == []
    rows = tshark_fields(pcap, recorder.port, "sflow_245.sequence_number",
                         "sflow.flow_sample.sequence_number", "sflow.flow_sample.sample_pool",
                         "sflow.flow_sample.sampling_rate", "sflow.flow_sample.index",
                         "sflow_245.header.frame_length", "sflow_245.header.payload_stripped",
                         "sflow_245.header.sampled_header_length", "sflow_245.header")
    assert [int(row[0][0]) for row in rows] == list(range(1, len(datagrams) + 1))
    decoded = [tuple(values) for row in rows for values in zip(*row[1:])]
    assert len(decoded) == len(samples)
    if rate == 10:
        assert len(samples) == len(frames) // 10
    assert [int(d[0]) for d in decoded] == list(range(1, len(samples) + 1))   # per sampler
    for (_, pool, sampled_rate, index, frame_length, stripped, length, header), sample in \
            zip(decoded, samples):
        frame = frames[int(pool) - 1]     # the pool counts packets seen, this one included
        assert (int(sampled_rate), int(index)) == (rate, 7)
        assert (int(frame_length), int(stripped)) == (len(frame) + 4, 4)   # the FCS
        header = bytes.fromhex(header)    # tshark shows the XDR padding too
        assert header[:int(length)] == frame[:128] == sample[2]
        assert header[int(length):] == bytes(-int(length) % 4)


@pytest.mark.skipif(missing_tools(TSHARK) is not None, reason=f"{missing_tools(TSHARK)}")
def test_vlan_tagged_samples_carry_the_extended_switch_record(capture, frames, tmp_path):
    with DatagramRecorder() as recorder:
        _, samples = run(capture, [sflow(recorder.port)], 10, "deterministic")
        assert recorder.wait(1)
        pcap = recorder.write_pcap(tmp_path / "sflow.pcap")
    rows = tshark_fields(pcap, recorder.port, "sflow_245.vlan.in", "sflow_245.vlan.out")
    vlans = [int(v) for row in rows for v in row[0]]
    assert vlans == [int(v) for row in rows for v in row[1]]   # a bridge keeps the tag
    tagged = [int.from_bytes(f[14:16], "big") & 0xFFF for f in frames[9::10]
              if f[12:14] in (b"\x81\x00", b"\x88\xa8")]
    assert vlans and vlans == tagged


# ---- pmacct: sfacctd and nfacctd renormalise what they receive ----

class Pmacct:
    """sfacctd or nfacctd on a loopback port, renormalising, printing totals
    by protocol as JSON (pmacct's print plugin) when stopped."""

    def __init__(self, daemon, directory):
        self.port = free_udp_port()
        self.output = Path(directory) / "totals.json"
        kind = "sfacctd" if daemon == SFACCTD else "nfacctd"
        config = Path(directory) / f"{kind}.conf"
        config.write_text("\n".join([
            "daemonize: false", f"{kind}_ip: 127.0.0.1", f"{kind}_port: {self.port}",
            f"{kind}_renormalize: true", "plugins: print[out]", "aggregate[out]: proto",
            "print_output[out]: json", f"print_output_file[out]: {self.output}",
            "print_output_file_append[out]: true", "print_refresh_time[out]: 1",
            ""]))
        self.log = tempfile.TemporaryFile()
        # a session of its own: its plugin processes end with it (stop())
        self.process = subprocess.Popen([daemon, "-f", str(config)], stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        # listening, and its print plugin up: what arrives earlier is lost
        while not (self._listening() and "setting object handlers" in self.text()):
            assert self.process.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.05)
        time.sleep(0.2)

    def _listening(self):
        from collector_tools import udp_sockets
        return bool(udp_sockets(self.port, self.process.pid))

    def text(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def _rows(self):
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line]

    def totals(self, timeout=20):
        """Packets and bytes over every purge (one a second), once they have
        stopped growing for 3 s (what was sent is all in); then it stops."""
        deadline, last, stable_since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            rows = self._rows()
            now = (sum(r["packets"] for r in rows), sum(r["bytes"] for r in rows))
            if now != last:
                last, stable_since = now, time.monotonic()
            elif now[0] and time.monotonic() - stable_since >= 3:
                break
            time.sleep(0.2)
        self.stop()
        return last

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


PMACCT_MISSING = missing_tools(*(t or "sfacctd" for t in (SFACCTD, NFACCTD)))


@pytest.mark.skipif(PMACCT_MISSING is not None, reason=f"pmacct: {PMACCT_MISSING}")
@pytest.mark.parametrize("rate", [100, 1000])
def test_sfacctd_estimates_exactly_what_the_pools_say_within_3n_of_the_truth(
        plain_capture, tmp_path, rate):
    """sfacctd scales a sampler's first sample by its rate and each later one
    by the pool's growth since the previous (pmacct's effective rate): with
    a fixed seed the estimate is exactly rate + last pool - first pool. The
    skips are at most 2N - 1, so the first pool and the packets after the
    last sample are each below 2N: the estimate is within 3N of the truth."""
    collector = Pmacct(SFACCTD, tmp_path)
    try:
        meter, samples = run(plain_capture[0], [sflow(collector.port)], rate, seed=11)
        packets, _ = collector.totals()
    finally:
        collector.stop()
    pools = [pool for pool, _, _ in samples]
    truth = plain_capture[1]
    assert packets == rate + pools[-1] - pools[0], collector.text()
    assert abs(packets - truth) <= 3 * rate
    assert meter.counters()["packets_read"] == truth


def sampled_bound(truth, rate):
    """3 sigma of a Bernoulli(1/N) sample count, scaled by N: the random
    skips (uniform over 1 .. 2N-1) vary less, deterministic ones not at all."""
    p = 1 / rate
    return 3 * rate * math.sqrt(truth * p * (1 - p)) + rate


@pytest.mark.skipif(PMACCT_MISSING is not None, reason=f"pmacct: {PMACCT_MISSING}")
@pytest.mark.parametrize("protocol", ["ipfix", "netflow9"])
def test_nfacctd_scales_sampled_records_by_the_announced_interval(
        capture, ip_packets, tmp_path, protocol):
    rate = 100
    collector = Pmacct(NFACCTD, tmp_path)
    try:
        meter, _ = run(capture, [CollectorProfile(host="127.0.0.1", port=collector.port,
                                                  protocol=protocol)], rate, seed=3)
        packets, octets = collector.totals()
    finally:
        collector.stop()
    counters = meter.counters()
    assert (packets, octets) == (counters["packets_metered"] * rate,
                                 counters["octets_metered"] * rate), collector.text()
    assert abs(packets - ip_packets) <= sampled_bound(ip_packets, rate)


# ---- nfdump: nfcapd scales at collection ----

@pytest.mark.skipif(missing_tools(NFCAPD) is not None, reason=f"{missing_tools(NFCAPD)}")
@pytest.mark.parametrize("protocol,rate", [("ipfix", 100), ("netflow9", 1000), ("netflow5", 100),
                                           ("ipfix", 1)])
def test_nfcapd_scales_sampled_records(capture, ip_packets, protocol, rate):
    with Nfcapd() as collector:
        meter, _ = run(capture, [CollectorProfile(host="127.0.0.1", port=collector.port,
                                                  protocol=protocol)], rate, "deterministic")
        stats = collector.stats()
        complaints = collector.complaints()
    versions = (4,) if protocol == "netflow5" else (4, 6)   # v5 carries IPv4 only
    packets = sum(meter.exported[v][0] for v in versions)
    octets = sum(meter.exported[v][1] for v in versions)
    sampler = f"Add new sampler id: -1, algorithm: 0, packet interval: 1, packet space: {rate - 1}"
    assert complaints == ([sampler] if rate > 1 and protocol != "netflow5" else [])
    assert stats["sequence_failures"] == 0
    assert (stats["packets"], stats["bytes"]) == (packets * rate, octets * rate)
    if protocol != "netflow5":
        assert abs(stats["packets"] - ip_packets) <= sampled_bound(ip_packets, rate)


@pytest.mark.skipif(missing_tools(TSHARK) is not None, reason=f"{missing_tools(TSHARK)}")
@pytest.mark.parametrize("protocol", ["ipfix", "netflow9"])
def test_tshark_reads_the_sampling_interval_cleanly(capture, tmp_path, protocol):
    from collector_tools import tshark_decode
    with DatagramRecorder() as recorder:
        run(capture, [CollectorProfile(host="127.0.0.1", port=recorder.port,
                                       protocol=protocol)], 100, "deterministic")
        assert recorder.wait(1)
        pcap = recorder.write_pcap(tmp_path / "export.pcap")
    assert tshark_problems(pcap, recorder.port) == []
    intervals = [record["fields"].get("cflow.sampling_interval")
                 for message in tshark_decode(pcap, recorder.port)
                 for record in message["records"] if record["kind"] == "options"]
    assert "100" in intervals


# ---- the peer: pmacctd's sfprobe plugin on the same capture ----

PMACCTD = shutil.which("pmacctd")


def sflow_field_names(pcap, port):
    """Every sFlow field name tshark shows in a capture of datagrams."""
    from xml.etree import ElementTree
    out = subprocess.run([TSHARK, "-n", "-r", str(pcap), "-d", f"udp.port=={port},sflow", "-o",
                          NO_HEADER_DISSECTION[0], "-T", "pdml"], check=True,
                         capture_output=True).stdout
    return {f.get("name") for f in ElementTree.fromstring(out).iter("field")
            if f.get("name", "").startswith("sflow")}


@pytest.mark.skipif(PMACCTD is None or missing_tools(TSHARK) is not None,
                    reason="needs pmacctd (Debian pmacct) and tshark")
def test_the_same_fields_as_pmacctd_sfprobe(capture, frames, tmp_path):
    """Both agents on one capture at 1:20, field by field in tshark: the same
    sFlow fields, every sample's header a prefix of a captured frame with
    its length (+ the FCS); what differs is said (below)."""
    results = {}
    with DatagramRecorder() as recorder:
        run(capture, [sflow(recorder.port)], 20)
        assert recorder.wait(1)
        results["flowprobe"] = (recorder.write_pcap(tmp_path / "ours.pcap"), recorder.port)
    with DatagramRecorder() as recorder:
        config = tmp_path / "pmacctd.conf"
        config.write_text("\n".join([
            "daemonize: false", f"pcap_savefile: {capture}", "plugins: sfprobe[s]",
            f"sfprobe_receiver[s]: 127.0.0.1:{recorder.port}", "sfprobe_agentip[s]: 127.0.0.1",
            "sampling_rate: 20", ""]))
        subprocess.run([PMACCTD, "-f", str(config)], capture_output=True, timeout=60)
        assert recorder.wait(1)
        results["pmacctd"] = (recorder.write_pcap(tmp_path / "theirs.pcap"), recorder.port)
    names = {}
    for tool, (pcap, port) in results.items():
        assert tshark_problems(pcap, port, min_severity="note", decoder="sflow",
                               preferences=NO_HEADER_DISSECTION) == [], tool
        names[tool] = sflow_field_names(pcap, port)
        rows = tshark_fields(pcap, port, "sflow.flow_sample.sampling_rate",
                             "sflow_245.header_protocol", "sflow_245.header.frame_length",
                             "sflow_245.header.payload_stripped",
                             "sflow_245.header.sampled_header_length", "sflow_245.header")
        samples = [s for row in rows for s in zip(*row)]
        assert len(samples) > PACKETS / 20 / 2, tool
        lengths = {int(length) for *_, length, _ in samples}
        prefixes = {n: {frame[:n]: len(frame) for frame in frames} for n in lengths}
        for rate, protocol, frame_length, stripped, length, header in samples:
            assert (rate, protocol, stripped) == ("20", "1", "4"), tool
            header = bytes.fromhex(header)[:int(length)]
            assert prefixes[int(length)].get(header, -4) + 4 == int(frame_length), tool
    # pmacctd adds the extended switch record to every sample (VLAN 0 when
    # untagged), flowprobe only where a tag says the VLAN; pmacctd sends
    # counter samples on its own clock (a slow run has one), flowprobe none here
    def flow_fields(found):
        return {n for n in found if not n.startswith(("sflow.counters_sample", "sflow_245.if",
                                                      "sflow_245.counters_record"))}
    assert flow_fields(names["flowprobe"]) == flow_fields(names["pmacctd"]), \
        names["flowprobe"] ^ names["pmacctd"]


@pytest.mark.skipif(missing_tools(TSHARK) is not None, reason=f"{missing_tools(TSHARK)}")
@pytest.mark.parametrize("linktype,pseudo", [(113, 16), (101, 0)])   # Linux cooked, raw IP
def test_cooked_and_raw_captures_send_their_ip_headers(tmp_path, linktype, pseudo):
    """What libpcap adds (the cooked header) was never on the wire: the
    sample is the IP header on, as IPv4 (11) or IPv6 (12), its true length."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    from captures import write_pcap
    packets = [bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=n) / UDP(sport=1000 + n)
                     / (b"x" * n * 7)) if n % 2 else
               bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=n))
               for n in range(30)]
    cooked = b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 6 + b"\x00\x00"
    frames = [cooked[:14] + (b"\x08\x00" if p[0] >> 4 == 4 else b"\x86\xdd") + p if pseudo else p
              for p in packets]
    path = write_pcap(tmp_path / "cooked.pcap", frames, linktype)
    with DatagramRecorder() as recorder:
        run(path, [sflow(recorder.port)], 1, "deterministic")
        assert recorder.wait(1)
        pcap = recorder.write_pcap(tmp_path / "sflow.pcap")
    assert tshark_problems(pcap, recorder.port, min_severity="note", decoder="sflow",
                           preferences=NO_HEADER_DISSECTION) == []
    rows = tshark_fields(pcap, recorder.port, "sflow_245.header_protocol",
                         "sflow_245.header.frame_length", "sflow_245.header.payload_stripped",
                         "sflow_245.header.sampled_header_length", "sflow_245.header")
    samples = [s for row in rows for s in zip(*row)]
    assert len(samples) == len(packets)
    for (protocol, frame_length, stripped, length, header), packet in zip(samples, packets):
        assert int(protocol) == (11 if packet[0] >> 4 == 4 else 12)
        assert (int(frame_length), int(stripped)) == (len(packet), 0)
        assert bytes.fromhex(header)[:int(length)] == packet[:128 - pseudo]
