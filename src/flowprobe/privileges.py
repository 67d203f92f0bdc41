"""Running without root.

The daemon starts as root (procd, systemd or a shell) because opening
capture handles needs CAP_NET_RAW and the control socket lives in
/var/run.  Once those are open it becomes the configured user, keeping
CAP_NET_RAW (interfaces that appear later, or come with a reload, can
still be opened) and, with the conntrack source, CAP_NET_ADMIN (its table
dumps need it); nothing else root could do remains, and no_new_privs is
set.  The daemon executes nothing, named in config or traffic.
"""

import grp
import os
import pwd

from flowprobe._cmeter_ffi import ffi, lib
from flowprobe.frozen import Frozen

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAPABILITY_NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}


class PrivilegeError(Exception):
    pass


class Account(Frozen):
    name: str
    uid: int
    gid: int
    group: str


def account(name):
    """The user's uid, primary gid and group name; PrivilegeError if it does
    not exist (on OpenWrt the package creates it)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"user {name!r} does not exist (option user)") from None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return Account(name, entry.pw_uid, entry.pw_gid, group)


def drop_to(user, capabilities=(CAP_NET_RAW,)):
    """Become `user` keeping only `capabilities`; a no-op when already that
    user.  PrivilegeError names what failed."""
    if os.getuid() == user.uid and os.geteuid() == user.uid:
        return False
    if os.geteuid() != 0:
        raise PrivilegeError(f"cannot become {user.name!r}: not started as root "
                             f"(uid {os.geteuid()})")
    error = ffi.new("char[]", 256)
    keep = sum(1 << capability for capability in set(capabilities))
    if lib.fp_drop_privileges(user.uid, user.gid, keep, error, len(error)) != 0:
        raise PrivilegeError(f"cannot become {user.name!r}: "
                             f"{ffi.string(error).decode(errors='replace')}")
    return True


def drop_for_service(user, conntrack):
    """The daemon's drop after start-up: conntrack dumps need CAP_NET_ADMIN,
    decided at start (a reload that turns the source on later reports the
    missing capability in status).  Modules Python would import on first use
    are imported first, while still root: after the drop the user may not be
    able to read them (a host name's IDNA codec, the JSON detector's
    UTF-16/32)."""
    import encodings.ascii  # noqa: F401
    import encodings.idna  # noqa: F401
    import encodings.latin_1  # noqa: F401
    import encodings.utf_16  # noqa: F401
    import encodings.utf_32  # noqa: F401
    keep = (CAP_NET_RAW, CAP_NET_ADMIN) if conntrack else (CAP_NET_RAW,)
    if drop_to(user, keep):
        return " and ".join(CAPABILITY_NAMES[c] for c in keep)
    return None


def effective_capabilities():
    """The capability numbers in effect now (from /proc), for status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                mask = int(line.split()[1], 16)
                return [bit for bit in range(64) if mask >> bit & 1]
    return []
