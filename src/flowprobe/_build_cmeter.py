"""cffi builder (out-of-line API mode) for the C metering core.

The declarations come from the marked block of _cmeter.h, so the header
stays the one place that states the API.  CC/CFLAGS from the environment
are honoured by setuptools, which is how the OpenWrt SDK cross-builds it.
"""

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
C_SOURCES = ["_cmeter.c", "cmeter/pipeline.c", "cmeter/decode.c", "cmeter/flow_table.c",
             "cmeter/frag_table.c", "cmeter/capture.c", "cmeter/record_json.c",
             "cmeter/record_pack.c", "cmeter/conntrack.c", "cmeter/privileges.c",
             "cmeter/route_cache.c", "cmeter/prefix_table.c", "cmeter/sampling.c",
             "cmeter/sflow_pack.c", "cmeter/tunnel.c",
             "cmeter/tcp_end.c", "cmeter/icmp_error.c",
             "cmeter/l2_flow.c", "cmeter/checksum.c", "cmeter/record_batch.c",
             "cmeter/route_lookup.c", "cmeter/history_rows.c",
             "cmeter/savefile.c"]


def field_enumerators():
    """cdef does not preprocess: the X-macro list of cmeter/fields.def,
    expanded here the way the C preprocessor expands it in _cmeter.h."""
    with open(os.path.join(HERE, "cmeter", "fields.def")) as table:
        names = re.findall(r"^FIELD\((\w+),", table.read(), re.M)
    lines = [f"FP_FIELD_{name} = {code}," for code, name in enumerate(names, 1)]
    return "\n".join(lines + [f"FP_FIELD_END = {len(names) + 1}, FP_FIELD_LAST = {len(names)},"])


def public_declarations():
    with open(os.path.join(HERE, "_cmeter.h")) as header:
        text = header.read()
    block = re.search(r"/\* cffi-begin \*/(.*)/\* cffi-end \*/", text, re.S).group(1)
    expansion = r"#define FIELD.*?#undef FIELD\s*FP_FIELD_END,.*?FP_FIELD_LAST = FP_FIELD_END - 1"
    block = re.sub(expansion, lambda _: field_enumerators(), block, flags=re.S)
    return re.sub(r"/\*.*?\*/", "", block, flags=re.S)


def optimization():
    """-O2 unless CFLAGS already says how to optimise: the OpenWrt SDK's -Os
    (smaller, for flash) must not be overridden by an -O2 after it."""
    return [] if re.search(r"(^|\s)-O", os.environ.get("CFLAGS", "")) else ["-O2"]


ffibuilder = FFI()
ffibuilder.cdef(public_declarations())
ffibuilder.set_source(
    "flowprobe._cmeter_ffi",
    '#include "_cmeter.h"',
    sources=[os.path.relpath(os.path.join(HERE, s)) for s in C_SOURCES],
    include_dirs=[os.path.relpath(HERE)],
    libraries=["pcap"],
    # hidden: calls between the core's files go direct, not through the PLT
    # (the module exports PyInit only)
    extra_compile_args=optimization() + ["-std=gnu99", "-fvisibility=hidden", "-Wall", "-Wextra",
                                         "-Wno-unused-parameter"]
    + os.environ.get("FLOWPROBE_EXTRA_CFLAGS", "").split(),
    extra_link_args=os.environ.get("FLOWPROBE_EXTRA_LDFLAGS", "").split(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
