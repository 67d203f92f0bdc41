"""Networks and AS numbers (enrich/prefixes.py, cmeter/prefix_table.c): a
`prefix asn` file in a longest-prefix-match table, checked against a brute
force over a generated table; a file that does not load names its line and
leaves the previous table in use; records get AS and prefix length per
direction, v5 AS_TRANS beyond 16 bits."""

import ipaddress
import os
import random

import pytest

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.enrich import stage as enrichment
from flowprobe.enrich.prefixes import PrefixTable
from flowprobe.enrich.settings import EnrichSettings


def generated(seed=3, count=1000):
    rng = random.Random(seed)
    prefixes = []
    for _ in range(count):
        v6 = rng.random() < 0.4
        bits = 128 if v6 else 32
        length = rng.randint(0, bits) if rng.random() < 0.05 else rng.randint(
            8, 40 if not v6 else 64)
        length = min(length, bits)
        address = rng.getrandbits(bits) >> (bits - length) << (bits - length) if length else 0
        network = (ipaddress.IPv6Network if v6 else ipaddress.IPv4Network)((address, length))
        prefixes.append((network, rng.randint(1, 2**32 - 1)))
    return prefixes, rng


def write(path, prefixes):
    path.write_text("# generated\n\n" + "".join(
        f"{network}\tAS{asn}\n" if asn % 2 else f"{network} {asn}\n"
        for network, asn in prefixes))
    return str(path)


def loaded(path, max_prefixes=10000):
    table = PrefixTable(path, max_prefixes)
    table.wait(30)
    return table


def test_the_most_specific_prefix_wins_as_a_brute_force_says(tmp_path):
    prefixes, rng = generated()
    table = loaded(write(tmp_path / "asn.txt", prefixes))
    assert table.error is None and table.stats()["prefixes"] == len(prefixes)
    asn = ffi.new("uint32_t *")
    for _ in range(1000):
        network, _ = rng.choice(prefixes)
        if rng.random() < 0.5:
            address = network.network_address + rng.randint(0, network.num_addresses - 1)
        else:
            address = ipaddress.ip_address(rng.getrandbits(network.max_prefixlen)
                                           if network.version == 6
                                           else rng.getrandbits(32))
        best = None
        for candidate, number in prefixes:   # later lines win among equal prefixes
            if candidate.version == address.version and address in candidate and (
                    best is None or candidate.prefixlen >= best[0]):
                best = (candidate.prefixlen, number)
        length = lib.fp_prefix_lookup(table.table, address.version, address.packed, asn)
        assert (None if length < 0 else (length, asn[0])) == best, address


def test_a_bad_file_names_its_line_and_the_previous_table_stays(tmp_path, caplog):
    path = tmp_path / "asn.txt"
    path.write_text("192.0.2.0/24 64500\n")
    table = loaded(str(path))
    path.write_text("192.0.2.0/24 64500\n198.51.100.0/33 64501\n")
    os.utime(path, ns=(1, 1))   # a new stamp even within the same tick
    table.wait(30)
    assert table.error == "line 2: not 'prefix/length asn'"
    assert table.stats()["prefixes"] == 1 and "the previous table stays" in caplog.text
    path.write_text("".join(f"10.{n}.0.0/16 {n}\n" for n in range(5)))
    table.max_prefixes = 4
    table.wait(30)
    assert table.error == "more than 4 prefixes (line 5)" and table.stats()["prefixes"] == 1


def test_records_get_each_directions_as_and_prefix_length_and_v5_as_trans(tmp_path):
    path = write(tmp_path / "asn.txt", [
        (ipaddress.ip_network("192.168.7.0/24"), 64501),
        (ipaddress.ip_network("198.51.100.0/22"), 4200000000),
        (ipaddress.ip_network("198.51.100.0/24"), 64500)])
    got = []
    settings = EnrichSettings(devices=False, prefix_file=path)
    stage = enrichment.Enrichment(settings, lambda b, n, t: got.append((b, n)), lambda: 0)
    stage.prefixes.wait(30)
    batch = ffi.new("struct fp_record[]", 2)
    for r, (src, dst) in zip(batch, (("192.168.7.20", "198.51.100.7"),
                                     ("192.168.8.1", "198.51.101.7"))):
        r.ip_version = 4
        ffi.memmove(r.src_addr, ipaddress.ip_address(src).packed, 4)
        ffi.memmove(r.dst_addr, ipaddress.ip_address(dst).packed, 4)
    stage.deliver(batch, 2, 0)
    assert [(r.src_as, r.src_prefix_length, r.dst_as, r.dst_prefix_length)
            for r in batch] == [(64501, 24, 64500, 24), (0, 0, 4200000000, 22)]
    layout = bytes([lib.FP_FIELD_SRC_AS, lib.FP_FIELD_DST_AS16, lib.FP_FIELD_SRC_PREFIX_LENGTH,
                    lib.FP_FIELD_DST_PREFIX_LENGTH])
    out, indices = ffi.new("uint8_t[]", 64), ffi.new("int[]", [1])
    packed = []
    for reverse in (0, 1):
        n = lib.fp_records_pack(batch, indices, 1, layout, len(layout), reverse, 0, out, 64)
        packed.append(bytes(ffi.buffer(out, n)).hex())
    # forward: no AS for the source, AS_TRANS (23456 = 0x5ba0) for a 4-byte AS in 16 bits
    assert packed == ["00000000" "5ba0" "00" "16", "fa56ea00" "0000" "16" "00"]


def test_netflow_v5_carries_the_ases_and_masks_in_its_own_fields():
    from flowprobe.export.netflow5 import HEADER, Netflow5Encoder
    batch = ffi.new("struct fp_record[]", 1)
    r = batch[0]
    r.ip_version, r.packets, r.src_as, r.dst_as = 4, 1, 64501, 4200000000
    r.src_prefix_length, r.dst_prefix_length = 24, 22
    [(datagram, count)] = Netflow5Encoder().encode(batch, 1, 0)
    record = datagram[HEADER.size:]
    assert record[40:46] == bytes.fromhex("fbf5" "5ba0" "18" "16")   # src_as, dst_as, masks


@pytest.mark.parametrize("line", ["192.0.2.0/24", "192.0.2.0 64500", "192.0.2.0/24 AS",
                                  "300.0.0.0/8 1", "::/129 1", "192.0.2.0/24 4294967296"])
def test_lines_that_are_not_prefix_asn_are_refused(tmp_path, line):
    table = loaded(write(tmp_path / "asn.txt", []) and str(tmp_path / "asn.txt"))
    (tmp_path / "asn.txt").write_text(f"{line}\n")
    os.utime(tmp_path / "asn.txt", ns=(2, 2))
    table.wait(30)
    assert table.error == "line 1: not 'prefix/length asn'"


def test_garbage_is_refused_by_line_and_never_half_loaded(tmp_path):
    """Random bytes, long lines, NULs: a table or an error naming a line."""
    rng = random.Random(7)
    alphabet = b"0123456789abcdef.:/ \t#ASas\x00\xff-\n"
    path = tmp_path / "asn.txt"
    for _ in range(200):
        size = rng.choice((5, 40, 600))
        path.write_bytes(b"10.0.0.0/8 1\n" + bytes(rng.choice(alphabet) for _ in range(size)))
        error = ffi.new("char[]", lib.FP_ERROR_SIZE)
        table = lib.fp_prefix_table_load(str(path).encode(), 64, error)
        if table == ffi.NULL:
            assert ffi.string(error).decode().startswith("line "), ffi.string(error)
        else:
            asn = ffi.new("uint32_t *")
            assert lib.fp_prefix_lookup(table, 4, bytes([10, 1, 2, 3]), asn) >= 0
            lib.fp_prefix_table_free(table)
