"""flowprobe read: the command-line contract (records as JSON, as text in
nfdump's long style, as a --format line; the summary; the progress line)."""

import io
import json
import os
import subprocess
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from captures import START_US, cli_records, run_cli, write_pcap
from flowprobe.cli import units

MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
KEYS = {"ip_version", "protocol", "src_addr", "dst_addr", "src_port", "dst_port", "packets",
        "octets", "flow_start_ms", "flow_end_ms", "tcp_flags", "end_reason"}


def udp_frames(count, sport=1000, gap_ms=1, family=4):
    ip = IP(src="10.0.0.1", dst="10.0.0.2") if family == 4 else IPv6(src="fd00::1", dst="fd00::2")
    data = bytes(Ether(**MACS) / ip / UDP(sport=sport, dport=9) / b"data")
    return [(START_US + n * gap_ms * 1000, data) for n in range(count)]


def test_json_records_and_summary(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", udp_frames(3) + udp_frames(2, family=6))
    result = run_cli("read", path, "--json")
    assert result.returncode == 0, result.stderr
    records = cli_records(result.stdout)
    assert len(records) == 2 and all(KEYS <= set(r) for r in records)
    assert sorted((r["ip_version"], r["packets"], r["octets"]) for r in records) == \
        [(4, 3, 96), (6, 2, 104)]
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["counters"]["packets_read"] == 5 and summary["memory_bytes"] > 0


def test_active_timeout_splits_into_lines(tmp_path):
    path = write_pcap(tmp_path / "long.pcap", udp_frames(10, gap_ms=1000))
    result = run_cli("read", path, "--json", "--active-timeout", "3")
    records = cli_records(result.stdout)
    assert [r["packets"] for r in records] == [3, 3, 3, 1]
    assert [r["end_reason"] for r in records] == ["active_timeout"] * 3 + ["forced_end"]


def test_several_files_are_one_capture(tmp_path):
    first = write_pcap(tmp_path / "1.pcap", udp_frames(2))
    second = write_pcap(tmp_path / "2.pcap", [(START_US + 5000, udp_frames(1)[0][1])])
    records = cli_records(run_cli("read", first, second, "--json").stdout)
    assert [r["packets"] for r in records] == [3]


def read_utc(*args):
    """flowprobe read with the local zone UTC, so times are predictable."""
    return subprocess.run([sys.executable, "-m", "flowprobe", "read", *map(str, args)],
                          capture_output=True, text=True, env=dict(os.environ, TZ="UTC"))


def test_text_output_as_nfdump_long(tmp_path):
    from scapy.layers.inet import ICMP, TCP
    frames = [
        (START_US, bytes(Ether(**MACS) / IP(src="10.0.0.1", dst="10.0.0.2")
                         / UDP(sport=1000, dport=53) / (b"q" * 1472))),
        (START_US + 1500, bytes(Ether(**MACS) / IP(src="10.0.0.1", dst="10.0.0.2")
                                / UDP(sport=1000, dport=53) / (b"q" * 1472))),
        (START_US + 2000, bytes(Ether(**MACS) / IPv6(src="2001:db8:100::2", dst="2001:db8::1")
                                / TCP(sport=8080, dport=44802, flags="S"))),
        (START_US + 2500, bytes(Ether(**MACS) / IPv6(src="2001:db8:100::2", dst="2001:db8::1")
                                / TCP(sport=8080, dport=44802, flags="PA") / (b"d" * 100))),
        (START_US + 3000, bytes(Ether(**MACS) / IP(src="10.0.0.9", dst="10.0.0.2")
                                / ICMP(type=3, code=3) / (b"i" * 28))),
    ]
    result = read_utc(write_pcap(tmp_path / "t.pcap", frames))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Date first seen (UTC)    Duration Proto       Src IP Addr:Port -> Dst IP Addr:Port"
        "      Flags    Packets     Bytes End",
        "2023-11-14 22:13:20.000     0.001 UDP            10.0.0.1:1000 -> 10.0.0.2:53"
        "                          2   2.9 KiB forced",
        "2023-11-14 22:13:20.002     0.000 TCP    [2001:db8:100::2]:8080 -> [2001:db8::1]:44802"
        "   ...AP.S.       2     220 B forced",
        "2023-11-14 22:13:20.003     0.000 ICMP                10.0.0.9 -> "
        "10.0.0.2 port unreachable                1      56 B forced",
    ]
    assert result.stderr == "Summary: 3 flows, 5 packets, 3.2 KiB; dropped: none\n"


def test_format_is_a_line_of_the_json_keys(tmp_path):
    path = write_pcap(tmp_path / "f.pcap", udp_frames(3) + udp_frames(2, family=6))
    result = read_utc(path, "--format", "{src_addr} {dst_port} {packets:>4} {octets} {ipsec_spi}.")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["10.0.0.1 9    3 96 .", "fd00::1 9    2 104 ."]
    assert result.stderr.startswith("Summary: 2 flows, 5 packets, 200 B;")
    for template, message in (("{bytes}", "no field 'bytes' (fields: ip_version, protocol,"),
                              ("{} {}", "fields are named, not numbered"),
                              ("{src_addr", "expected '}' before end of string")):
        refused = read_utc(path, "--format", template)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.startswith(f"flowprobe: --format: {message}"), refused.stderr
    both = read_utc(path, "--format", "{src_addr}", "--json")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_no_progress_line_when_stderr_is_not_a_terminal(tmp_path):
    path = write_pcap(tmp_path / "p.pcap", udp_frames(2000))
    result = read_utc(path, "--json", "--progress-min-bytes", "0")
    assert "\r" not in result.stderr and "reading" not in result.stderr


def test_progress_line_says_how_far_how_fast_and_how_long(tmp_path):
    from flowprobe.cli.read import Progress
    from flowprobe.meter import Meter
    path = write_pcap(tmp_path / "p.pcap", udp_frames(5000))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    meter, stream, now = Meter(), Terminal(), [0.0]
    progress = Progress([path], meter, stream, min_bytes=1000, every=0.5,
                        clock=lambda: now[0])
    assert progress.enabled and progress.total == path.stat().st_size
    progress.file(path)
    source = meter.open_file(path)
    meter.dispatch(source, max_packets=1000)   # libpcap reads ahead a buffer's worth
    now[0] = 2.0
    progress.update()
    line = stream.getvalue()
    assert line.startswith("\r\033[Kreading p.pcap: ")
    assert f"of {units.size(progress.total)} (" in line and "500 packets/s" in line
    assert line.endswith(" left")
    progress.clear()
    assert stream.getvalue().endswith("\r\033[K")
    meter.close(source)
    small = Progress([path], meter, Terminal(), min_bytes=10 ** 9)
    assert not small.enabled


def test_real_stacks_capture_reads_as_text(real_stacks_capture):
    as_json = cli_records(run_cli("read", real_stacks_capture, "--json").stdout)
    text = read_utc(real_stacks_capture)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()[1:]
    assert len(lines) == len(as_json)
    assert text.stderr.startswith(f"Summary: {units.plural(len(as_json), 'flow')}, ")
    v6_with_ports = [r for r in as_json if r["ip_version"] == 6 and r["protocol"] in (6, 17)]
    assert v6_with_ports
    for record in v6_with_ports:
        ends = f"[{record['src_addr']}]:{record['src_port']} -> " \
               f"[{record['dst_addr']}]:{record['dst_port']}"
        assert any(ends in line for line in lines), ends
    assert any(" TCP " in line and "...A" in line for line in lines)
    assert any("echo request" in line for line in lines)


def test_missing_file_is_one_line_and_nothing_else(tmp_path):
    good = write_pcap(tmp_path / "good.pcap", udp_frames(1))
    result = run_cli("read", good, tmp_path / "missing.pcap", "--json")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "missing.pcap" in result.stderr and "No such file" in result.stderr


def test_not_a_capture(tmp_path):
    bogus = tmp_path / "bogus.pcap"
    bogus.write_bytes(b"this is not a capture file at all")
    result = run_cli("read", bogus)
    assert result.returncode == 1 and "bogus.pcap" in result.stderr


def test_cut_capture_reports_what_was_read_and_fails(tmp_path):
    path = write_pcap(tmp_path / "cut.pcap", udp_frames(5))
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # the last packet's bytes are cut short
    result = run_cli("read", path, "--json")
    assert result.returncode == 1
    assert [r["packets"] for r in cli_records(result.stdout)] == [4]
    assert "truncated" in result.stderr


def test_bad_table_option_names_it(tmp_path):
    result = run_cli("read", write_pcap(tmp_path / "x.pcap", udp_frames(1)), "--max-flows", "0")
    assert result.returncode == 2
    assert "--max-flows" in result.stderr and "0" in result.stderr


def test_version():
    from flowprobe import __version__
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_json_from_c_equals_the_python_records(tmp_path):
    """--json is formatted in C; it must say exactly what the Python records say."""
    from scapy.layers.inet import ICMP, TCP
    from scapy.layers.ipsec import ESP
    from scapy.layers.l2 import Dot1Q

    from captures import meter_pcap
    frames = udp_frames(2) + udp_frames(1, family=6) + [
        (START_US + 9000, bytes(Ether(**MACS) / Dot1Q(vlan=4094) / IP(src="1.2.3.4", dst="5.6.7.8")
                                / TCP(flags="SA", sport=65535))),
        (START_US + 9001, bytes(Ether(**MACS) / IP(src="5.6.7.8", dst="1.2.3.4") / ICMP(type=0))),
        (START_US + 9002, bytes(Ether(**MACS) / IP(src="1.2.3.4", dst="5.6.7.8") / ICMP(type=8))),
        (START_US + 9003, bytes(Ether(**MACS) / IPv6(src="::ffff:1.2.3.4", dst="fe80::1")
                                / ESP(spi=0xFFFFFFFF))),
    ]
    path = write_pcap(tmp_path / "mix.pcap", frames)
    for options in ([], ["--biflow"]):
        expected, _ = meter_pcap(path, bidirectional=bool(options))
        result = run_cli("read", path, "--json", "--hash-seed", "1", *options)
        assert cli_records(result.stdout) == expected


IPV6_FORMS = ["::", "::1", "::1.2.3.4", "::ffff:1.2.3.4", "1::", "2001:db8::1:0:0:1",
              "2001:db8:0:1:1:1:1:1", "fe80::abcd:0:0:0", "0:0:1::", "ffff:ffff:ffff:ffff::",
              "::ffff:0:1.2.3.4", "64:ff9b::192.0.2.33", "1:0:0:2:0:0:0:3"]


def test_ipv6_text_from_c_equals_python(tmp_path):
    """Every zero-run shape and IPv4-embedded form, as Python (glibc) writes them."""
    from captures import meter_pcap
    frames = [(START_US + n, bytes(Ether(**MACS) / IPv6(src=address, dst="2001:db8::2")
                                   / UDP(sport=n + 1, dport=9)))
              for n, address in enumerate(IPV6_FORMS)]
    path = write_pcap(tmp_path / "v6.pcap", frames)
    expected, _ = meter_pcap(path)
    printed = cli_records(run_cli("read", path, "--json", "--hash-seed", "1").stdout)
    assert printed == expected
    assert len({r["src_addr"] for r in printed}) == len(IPV6_FORMS)
