"""Least privilege: the daemon opens its captures and sockets as root, then
runs as the configured user with CAP_NET_RAW alone, and still does
everything a reload asks (a new interface, a new collector) while
exporting exactly as before.

The live part needs root, ip netns, ping and nfcapd; skipped otherwise.
"""

import os
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from collector_tools import NFCAPD, NFDUMP, Nfcapd, missing_tools, per_flow_key
from flowprobe import privileges
from flowprobe.control.client import call
from netlab import RouterLab, missing
from test_daemon_live import Daemon, all_up, uci_config

UNPRIVILEGED = "nobody"
CAP_NET_RAW_MASK = 1 << privileges.CAP_NET_RAW


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


def test_an_unknown_user_is_named():
    with pytest.raises(privileges.PrivilegeError, match="'no-such-user-fp' does not exist"):
        privileges.account("no-such-user-fp")


@pytest.mark.skipif(os.geteuid() == 0, reason="checks the refusal of a non-root start")
def test_only_root_can_become_someone_else():
    with pytest.raises(privileges.PrivilegeError, match="not started as root"):
        privileges.drop_to(privileges.account("root"))


def test_a_child_that_drops_keeps_only_cap_net_raw():
    """In a child process (the test itself must stay root)."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    user = privileges.account(UNPRIVILEGED)
    code = ("from flowprobe import privileges\n"
            f"privileges.drop_to(privileges.account({UNPRIVILEGED!r}))\n"
            "import os; print(os.getresuid(), os.getresgid(), os.getgroups(),"
            " privileges.effective_capabilities())\n"
            "try:\n    os.setuid(0)\nexcept PermissionError:\n    print('no way back')\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('CapBnd')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == [f"{(user.uid,) * 3} {(user.gid,) * 3} [{user.gid}] "
                   f"[{privileges.CAP_NET_RAW}]", "no way back",
                   f"['{1 << privileges.CAP_NET_RAW:016x}']"]


skip_live = missing() or missing_tools(NFCAPD, NFDUMP)


@pytest.fixture
def lab():
    if skip_live:
        pytest.skip(f"live daemon: {skip_live}")
    with RouterLab() as lab:
        yield lab


@pytest.fixture
def readable_dir():
    """The config must be readable by the user after the drop (as
    /etc/config is); pytest's tmp_path is root-only."""
    path = tempfile.mkdtemp(prefix="flowprobe-lp-")
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", path], check=False)


def test_the_daemon_runs_as_its_user_and_still_reopens_interfaces(lab, readable_dir, tmp_path):
    from pathlib import Path
    directory = Path(readable_dir)
    user = privileges.account(UNPRIVILEGED)
    socket_path = str(tmp_path / "control.sock")
    extra = {"user": UNPRIVILEGED}
    with Nfcapd(netns=lab.router, port=2055) as collector:
        daemon = Daemon(lab, directory, uci_config(socket_path, 2055, ["r-cli"], extra))
        daemon.socket = socket_path
        os.chmod(daemon.config, 0o644)
        daemon.wait_until(lambda s: all_up(s) and s["user"]["uid"] == user.uid)
        process = proc_status(daemon.process.pid)
        socket_mode = os.stat(socket_path)
        lab.run(lab.client, "ping", "-c", "3", "-i", "0.2", lab.server4)

        # a reload that needs CAP_NET_RAW: a capture on a second interface
        daemon.config.write_text(uci_config(socket_path, 2055, ["r-cli", "r-srv"], extra))
        reply = call(socket_path, "reload")
        daemon.wait_until(lambda s: len(s["interfaces"]) == 2 and all_up(s))
        lab.run(lab.client, "ping", "-c", "4", "-i", "0.2", lab.server4)
        time.sleep(0.5)
        status = daemon.status()
        daemon.stop()
        flows = per_flow_key(collector.flows())
    assert process["Uid"] == [str(user.uid)] * 4 and process["Gid"] == [str(user.gid)] * 4
    assert int(process["CapEff"][0], 16) == CAP_NET_RAW_MASK
    assert int(process["CapPrm"][0], 16) == CAP_NET_RAW_MASK
    assert process["NoNewPrivs"] == ["1"]
    # nothing outside what it keeps can come back, not even by a file capability
    assert int(process["CapBnd"][0], 16) == CAP_NET_RAW_MASK
    assert status["user"] == {"uid": user.uid, "capabilities": [privileges.CAP_NET_RAW]}
    # root and the user's group only
    assert stat.S_IMODE(socket_mode.st_mode) == 0o660 and socket_mode.st_gid == user.gid
    assert reply == {"reloaded": True, "error": None}
    # echo requests in at r-cli: 3 before the reload, 4 after; replies in at r-srv: 4
    requests = sorted(v[0] for k, v in flows.items()
                      if k[1] == 1 and k[2] == lab.client4 and k[3] == lab.server4)
    replies = [v[0] for k, v in flows.items()
               if k[1] == 1 and k[2] == lab.server4 and k[3] == lab.client4]
    assert requests == [7], flows
    assert replies == [4], flows
    assert "Traceback" not in daemon.output()


def test_a_user_that_does_not_exist_stops_the_start(lab, readable_dir, tmp_path):
    from pathlib import Path
    socket_path = str(tmp_path / "control.sock")
    daemon = Daemon(lab, Path(readable_dir),
                    uci_config(socket_path, 2055, ["r-cli"], {"user": "no-such-user-fp"},
                               collectors=0))
    # an environment error at start is a config error: exit 2, the option named
    assert daemon.process.wait(30) == 2
    assert "flowprobe.main.user: user 'no-such-user-fp' does not exist" in daemon.output()


EXECUTING_PYTHON = ("subprocess", "os.system", "os.popen", "os.exec", "os.spawn", "pty.spawn",
                    "os.posix_spawn")
EXECUTING_C = ("system(", "popen(", "execl", "execv", "execle", "execvp", "posix_spawn", "fork(")


def test_the_daemon_executes_nothing():
    """Nothing named in config or traffic can be run: the daemon's code has
    no way to start a program (and no_new_privs holds after the drop)."""
    import re
    from pathlib import Path
    source = Path(privileges.__file__).parent
    found = []
    for path in source.rglob("*.py"):
        text = path.read_text()
        found += [f"{path.name}: {name}" for name in EXECUTING_PYTHON
                  if re.search(rf"(?<![\w.]){re.escape(name)}", text)]
    for path in list(source.rglob("*.c")) + list(source.rglob("*.h")):
        text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
        found += [f"{path.name}: {name}" for name in EXECUTING_C
                  if re.search(rf"(?<![\w.]){re.escape(name)}", text)]
    assert found == []


def test_with_the_conntrack_source_cap_net_admin_is_kept_too():
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    code = ("from flowprobe import privileges as p\n"
            f"p.drop_to(p.account({UNPRIVILEGED!r}), (p.CAP_NET_RAW, p.CAP_NET_ADMIN))\n"
            "print(p.effective_capabilities())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == f"[{privileges.CAP_NET_ADMIN}, {privileges.CAP_NET_RAW}]"
