"""Packet sampling in the C core (cmeter/sampling.c): 1 in N decided before
decoding, every packet still counted (read = in records + dropped + skipped
by sampling), reproducible with a seed, and within the statistical bound of
the truth; the ring of sampled headers holds them byte for byte, bounded."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from captures import assert_conserved
from flowprobe import config
from flowprobe.meter import Meter, MeterError
from flowprobe.settings import MeterSettings

ROOT = Path(__file__).resolve().parent.parent
PACKETS = 20000


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """tools/gen_capture.py's realistic mix (VLANs, fragments, IPv6)."""
    path = tmp_path_factory.mktemp("sampling") / "mix.pcap"
    subprocess.run([sys.executable, str(ROOT / "tools/gen_capture.py"), "--packets",
                    str(PACKETS), "--flows", "500", "--seed", "1", "-o", str(path)],
                   check=True, capture_output=True)
    return path


def meter_sampled(path, rate, algorithm="random", seed=1, ring=0, ifindex=0):
    meter = Meter(MeterSettings(hash_seed=1))
    meter.set_sampling(ifindex, rate, algorithm, seed=seed)
    if ring:
        meter.keep_samples(ring)
    records, samples = [], []
    for batch in meter.read_file(path, ifindex):
        records += batch
        samples += drain_samples(meter)
    meter.flush()
    records += meter.drain()
    samples += drain_samples(meter)
    return meter, records, samples


def drain_samples(meter):
    from flowprobe._cmeter_ffi import ffi
    return [(s.ifindex, s.frame_length, s.sample_pool, s.rate,
             bytes(ffi.buffer(s.header, s.header_length)))
            for batch, n in meter.drain_samples_raw() for s in (batch[i] for i in range(n))]


def packets_in(records):
    return sum(r["packets"] for r in records)


def test_deterministic_takes_every_nth_packet_and_conserves(capture):
    meter, records, _ = meter_sampled(capture, 100, "deterministic")
    counters = meter.counters()
    assert counters["packets_read"] == PACKETS
    assert counters["packets_skipped_by_sampling"] == PACKETS - PACKETS // 100
    assert_conserved(records, counters)
    stats = meter.sampling_stats()[0]
    assert (stats["pool"], stats["sampled"]) == (PACKETS, PACKETS // 100)


@pytest.mark.parametrize("rate", [10, 100, 1000])
def test_random_sampling_is_within_the_bound_and_reproducible(capture, rate):
    """Skips uniform over 1 .. 2N-1 vary less than Bernoulli(1/N) draws, so
    the binomial 3 sigma is a safe bound for the sampled count: the estimate
    (sampled x N) is within N x 3 sigma of the packets seen."""
    meter, records, _ = meter_sampled(capture, rate, seed=7)
    sampled = meter.sampling_stats()[0]["sampled"]
    p = 1 / rate
    sigma = math.sqrt(PACKETS * p * (1 - p))
    assert abs(sampled - PACKETS * p) <= 3 * sigma, (sampled, PACKETS * p, sigma)
    assert_conserved(records, meter.counters())
    # the same seed, the same packets: exactly the same records
    again, records_again, _ = meter_sampled(capture, rate, seed=7)
    assert again.sampling_stats()[0]["sampled"] == sampled
    assert packets_in(records_again) == packets_in(records)


def test_one_in_one_is_every_packet(capture):
    meter, records, _ = meter_sampled(capture, 1)
    counters = meter.counters()
    assert counters["packets_skipped_by_sampling"] == 0
    assert packets_in(records) + sum(v for k, v in counters.items()
                                     if k.startswith("dropped_")) == PACKETS


def test_the_ring_holds_sampled_headers_byte_for_byte(capture):
    from scapy.utils import RawPcapReader
    frames = [data for data, _ in RawPcapReader(str(capture))]
    meter, _, samples = meter_sampled(capture, 50, "deterministic", ring=1024, ifindex=7)
    assert len(samples) == PACKETS // 50
    for ifindex, frame_length, pool, rate, header in samples:
        frame = frames[pool - 1]       # the pool counts the packet sampled
        assert (ifindex, rate, frame_length) == (7, 50, len(frame))
        assert header == frame[:128]
    pools = [s[2] for s in samples]
    assert pools == sorted(pools) and pools[0] == 50
    ring = meter.sample_ring_stats()
    assert ring["taken"] == ring["drained"] == len(samples) and ring["overflows"] == 0


def test_a_full_ring_counts_what_it_refuses(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    frames = [bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=n % 60000 + 1))
              for n in range(300)]
    meter = Meter(MeterSettings(hash_seed=1))
    meter.keep_samples(16)
    for n, frame in enumerate(frames):   # handed in without draining: the ring fills
        meter.process_frame(frame, 1, 1_700_000_000_000_000 + n * 1000, ifindex=3)
    ring = meter.sample_ring_stats()
    assert (ring["queued"], ring["taken"], ring["overflows"]) == (16, 16, 284)
    assert meter.sampling_stats()[3]["samples_lost"] == 284
    assert len(drain_samples(meter)) == 16
    # every packet is still metered: the ring is for sFlow, the table for flows
    meter.flush()
    assert_conserved(meter.drain(), meter.counters())


def test_bad_rates_are_refused_with_the_reason():
    meter = Meter()
    for rate in (0, 1 << 24):
        with pytest.raises(MeterError, match="sampling rate must be 1..16777215"):
            meter.set_sampling(1, rate)


def test_the_option_is_read_as_1_in_n_with_errors_naming_it():
    text = ("config flowprobe main\n list interface lan\n list interface wan\n"
            " option sampling '1:100'\n"
            "config interface lan\n option sampling '1:10'\n"
            " option sampling_algorithm deterministic\n")
    lan, wan = config.parse(text).interfaces
    assert (lan.sampling, lan.sampling_algorithm) == (10, "deterministic")
    assert (wan.sampling, wan.sampling_algorithm) == (100, "random")
    for bad in ("'1:0'", "'2:5'", "'1:'", "'1:16777216'", "'half'"):
        with pytest.raises(config.ConfigError) as error:
            config.parse(f"config flowprobe main\n list interface lan\n option sampling {bad}\n")
        assert str(error.value).startswith("flowprobe.main.sampling: invalid value")
        assert "1:N with N from 1 (every packet) to 16777215" in str(error.value)
    with pytest.raises(config.ConfigError, match="sampling_algorithm.*random or deterministic"):
        config.parse("config flowprobe main\n list interface lan\n"
                     " option sampling_algorithm often\n")


def test_status_says_sampled_and_estimated():
    from flowprobe.cli.status import details
    status = {"interfaces": [{"name": "wan", "up": True, "packets_read": 41,
                              "sampling": {"rate": 4, "algorithm": "deterministic",
                                           "packets_seen": 41, "packets_sampled": 10,
                                           "packets_estimated": 40, "samples_lost": 0}}],
              "collectors": [{"collector": "sflow", "protocol": "sflow", "flow_samples": 10,
                              "counter_samples": 3, "samples_not_encodable": 0}]}
    text = "\n".join(details(status, 0))
    assert "1:4 deterministic: 10 of 41 packets, about 40 estimated" in text
    assert "10 flow, 3 counter, 0 not encodable" in text


def test_a_new_table_takes_the_samplers_over(capture):
    """A reload that needs new tables hands the capture handles over: the
    samplers go with them (sFlow's pools only grow), the header ring is kept,
    and not a packet is lost or counted twice across the switch."""
    from flowprobe.service.metering import SAMPLE_RING, Metering
    samples = []
    metering = Metering(MeterSettings(hash_seed=1), lambda *a: None,
                        lambda batch, count, now: samples.extend(
                            batch[i].sample_pool for i in range(count)))
    metering.keep_samples(True)
    old = metering.meter
    source = old.open_file(capture, 3)
    old.set_sampling(3, 10, "deterministic")
    assert old.dispatch(source, 5000) == 5000
    metering.drain(0)
    new = metering.apply(metering.prepare(MeterSettings(hash_seed=1, max_flows=1000)), 0)
    assert new is not old and new.sample_ring_stats()["capacity"] == SAMPLE_RING
    while new.dispatch(source) or new.pending:
        metering.drain(0)
    metering.drain(0)
    stats = new.sampling_stats()[3]
    assert (stats["rate"], stats["pool"], stats["sampled"]) == (10, PACKETS, PACKETS // 10)
    assert samples == list(range(10, PACKETS + 1, 10))
    assert metering.counters()["packets_read"] == PACKETS
    assert metering.counters()["packets_skipped_by_sampling"] == PACKETS - PACKETS // 10
    new.close(source)


def test_every_packet_is_accounted_for_under_sampling():
    """The property test's random traffic (fragments, floods, truncation),
    sampled 1 in 1..7 by either algorithm: conservation holds with
    packets_skipped_by_sampling, and the sampler saw every packet."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from test_properties import START_US, check_conserved, meter_settings, packet_events

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(events=packet_events, config=meter_settings, rate=st.integers(1, 7),
           algorithm=st.sampled_from(["random", "deterministic"]), seed=st.integers(0, 99))
    def check(events, config, rate, algorithm, seed):
        meter = Meter(config)
        meter.set_sampling(0, rate, algorithm, seed=seed)
        meter.keep_samples(8)
        records, now_us, seen = [], START_US, 0
        for frames, gap_ms, cut in events:
            now_us += gap_ms * 1000
            for frame in frames:
                captured = frame[:cut] if cut is not None else frame
                meter.process_frame(captured, 1, now_us, wire_length=len(frame))
                seen += 1
                now_us += 100
            records += meter.drain()
            for _ in meter.drain_samples_raw():
                pass
        meter.flush()
        records += meter.drain()
        check_conserved(meter, records)
        stats = meter.sampling_stats().get(0, {"pool": 0, "sampled": 0})
        assert stats["pool"] == seen == meter.counters()["packets_read"]
        assert stats["sampled"] == seen - meter.counters()["packets_skipped_by_sampling"]

    check()
