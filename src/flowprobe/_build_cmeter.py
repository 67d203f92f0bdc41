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
             "cmeter/record_pack.c", "cmeter/conntrack.c", "cmeter/privileges.c"]


def public_declarations():
    with open(os.path.join(HERE, "_cmeter.h")) as header:
        text = header.read()
    block = re.search(r"/\* cffi-begin \*/(.*)/\* cffi-end \*/", text, re.S).group(1)
    return re.sub(r"/\*.*?\*/", "", block, flags=re.S)


ffibuilder = FFI()
ffibuilder.cdef(public_declarations())
ffibuilder.set_source(
    "flowprobe._cmeter_ffi",
    '#include "_cmeter.h"',
    sources=[os.path.relpath(os.path.join(HERE, s)) for s in C_SOURCES],
    include_dirs=[os.path.relpath(HERE)],
    libraries=["pcap"],
    extra_compile_args=["-O2", "-std=gnu99", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    + os.environ.get("FLOWPROBE_EXTRA_CFLAGS", "").split(),
    extra_link_args=os.environ.get("FLOWPROBE_EXTRA_LDFLAGS", "").split(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
