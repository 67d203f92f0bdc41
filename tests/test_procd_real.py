"""The init script under the real procd (issue 22).

tools/openwrt-userland/procd.sh builds procd, ubox (logd, logread,
validate_data), jsonfilter, libubox, ubus and uci from the checkouts in
OPENWRT_SRC and runs procd as PID 1 of a private PID/mount/network namespace,
with OpenWrt's rc.common, functions.sh, procd.sh, uci.sh, reload_config and
flowprobe installed as the package installs it (the daemon is this working
tree). Every command below runs inside it, as a user on the router would.

Skipped, saying why, without OPENWRT_SRC, root or busybox. The cases run in
order on one namespace; the last ones power it off and boot it again. The
log module's own tests (the datagrams logd gets) run everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "openwrt-userland" / "procd.sh"
SOURCES = os.environ.get("OPENWRT_SRC")



def missing():
    """Why the real procd cannot run here (None: it can)."""
    if not SOURCES:
        return ("OPENWRT_SRC is not set: point it at checkouts of procd, ubox, jsonpath, "
                "libubox, ubus, uci, udebug and an OpenWrt tree (see "
                "tools/openwrt-userland/procd.sh) to run the init script under the real procd")
    if os.geteuid() != 0:
        return "the real procd needs root (namespaces, mounts)"
    if shutil.which("busybox") is None:
        return "the real procd needs busybox (its sh: dash lacks let)"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "the real procd needs unshare and nsenter (util-linux)"
    return None


LOG_LINE = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} (\w+)\.(\w+) "
                      r"(\S+?)(?:\[(\d+)\])?: (.*)$")
CONFIG = """config flowprobe 'main'
	option enabled '{enabled}'
	list interface 'lo'
	option user 'flowprobe'
	option idle_timeout '{idle_timeout}'
"""


class Router:
    """The namespace: sh(...) runs a shell command in it."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def script(self, *args, check=True, timeout=120):
        done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"procd.sh {' '.join(args)}: exit {done.returncode}\n"
                                 f"{done.stdout}{done.stderr}\n{self.diagnostics()}")
        return done

    def sh(self, command, check=True, timeout=60):
        done = self.script("exec", str(self.run_dir), "sh", "-c", command, check=False,
                           timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{command!r}: exit {done.returncode}\n{done.stdout}"
                                 f"{done.stderr}\n{self.logread()}")
        return done

    def logread(self):
        return self.sh("logread", check=False).stdout

    def log(self, program="flowprobe"):
        """(facility.level, message) of every logread line of a program."""
        lines = []
        for line in self.logread().splitlines():
            m = LOG_LINE.match(line)
            if m and m.group(3) == program:
                lines.append((f"{m.group(1)}.{m.group(2)}", m.group(5)))
        return lines

    def diagnostics(self):
        out = []
        for name in ("procd.log", "console.log"):
            path = self.run_dir / name
            if path.exists():
                out.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def write_config(self, enabled=1, idle_timeout="15"):
        """A whole new file, committed: reload_config compares with what it
        saw last, not with what the daemon runs."""
        self.sh("cat > /etc/config/flowprobe << 'EOF'\n"
                + CONFIG.format(enabled=enabled, idle_timeout=idle_timeout) + "EOF\n"
                + "reload_config")

    def uci(self, *commands):
        """uci commands, then `uci commit flowprobe && reload_config`."""
        self.sh("; ".join(f"uci {c}" for c in commands)
                + "; uci commit flowprobe && reload_config")

    def instance(self):
        """procd's view of the flowprobe instance (None: no instance)."""
        reply = self.sh("ubus call service list '{\"name\":\"flowprobe\"}'").stdout
        service = json.loads(reply or "{}").get("flowprobe", {})
        return service.get("instances", {}).get("instance1")

    def pid(self):
        instance = self.instance()
        return instance.get("pid") if instance and instance.get("running") else None

    def status(self):
        done = self.sh("ubus -t 2 call flowprobe status", check=False)
        return json.loads(done.stdout) if done.returncode == 0 and done.stdout else None

    def wait(self, what, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never {what} in {timeout:g} s\n{self.logread()}\n"
                                     f"{self.diagnostics()}")
            time.sleep(0.5)

    def running(self, timeout=30.0):
        """The daemon's pid once it answers on ubus."""
        def answering():
            pid = self.pid()
            status = self.status() if pid else None
            return pid if status and status.get("uptime_s") is not None else None
        return self.wait("running and answering ubus", answering, timeout)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    reason = missing()
    if reason:
        pytest.skip(reason)
    built = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True, timeout=3600)
    assert built.returncode == 0, f"procd.sh build failed:\n{built.stdout}{built.stderr}"
    run_dir = tmp_path_factory.mktemp("procd")
    router = Router(run_dir)
    router.script("start", str(run_dir))
    revisions = Path(os.environ.get("OPENWRT_BUILD", Path(SOURCES).resolve().parent
                                    / "openwrt-build")) / "procd" / "revisions"
    if revisions.exists():
        print("\nupstream:", revisions.read_text().replace("\n", "; "))
    yield router
    if (run_dir / "pid").exists():
        router.script("kill", str(run_dir), check=False)


def test_enable_start_stop_restart(router):
    # as shipped: enabled '0', so the service is registered with no instance
    router.sh("/etc/init.d/flowprobe enable")
    links = router.sh("ls /etc/rc.d").stdout.split()
    assert "S95flowprobe" in links and "K10flowprobe" in links, links
    router.sh("/etc/init.d/flowprobe start")
    assert router.instance() is None

    # enabling it by uci and reload_config starts it: uid dropped, ubus answers
    router.uci("set flowprobe.main.enabled=1", "delete flowprobe.main.interface",
               "add_list flowprobe.main.interface=lo")
    pid = router.running()
    status = router.status()
    assert status["config_error"] is None
    assert status["user"]["uid"] != 0 and status["user"]["capabilities"] == [13], status["user"]

    router.sh("/etc/init.d/flowprobe stop")
    router.wait("stopped", lambda: router.instance() is None, 20)
    assert router.status() is None
    assert any(m.startswith("stopped:") for _, m in router.log()), router.log()

    router.sh("/etc/init.d/flowprobe start")
    started = router.running()
    assert started != pid
    router.sh("/etc/init.d/flowprobe restart")
    restarted = router.running()
    assert restarted != started


LISTENER = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 4739))
s.settimeout(30)
print("listening", flush=True)
while True:
    message = s.recv(65535)
    version, length = struct.unpack("!HH", message[:4])
    offset = 16
    while version == 10 and offset + 4 <= len(message):
        set_id, set_length = struct.unpack("!HH", message[offset:offset + 4])
        if set_id >= 256:
            print("data set", set_id, flush=True)
            sys.exit(0)
        offset += max(set_length, 4)
"""


def test_ubus_is_served_from_its_socket_not_polled(router):
    """The loop watches the ubus connection's descriptor (control_plane.py)
    instead of waking ten times a second to poll it."""
    router.write_config()
    router.sh("/etc/init.d/flowprobe restart")
    router.running()
    served = [m for _, m in router.log() if m.startswith("ubus object flowprobe registered")]
    assert served and "its socket watched" in served[-1], served


def test_ubus_published_again_after_ubusd_restarts(router):
    """procd respawns a killed ubusd; the daemon publishes its object on
    the new connection and watches the new descriptor (the old one is gone)."""
    router.write_config()
    router.sh("/etc/init.d/flowprobe restart")
    pid = router.running()
    before = len(router.log())
    router.sh("kill -9 $(pidof ubusd)")
    router.wait("served again", lambda: any(
        "its socket watched" in m for _, m in router.log()[before:]) and router.status(),
        timeout=60)
    assert router.pid() == pid
    for _ in range(3):   # and keeps answering: no stale registration in the loop
        assert router.status()["uptime_s"] is not None


def test_records_reach_a_collector(router):
    router.sh("cat > /etc/config/flowprobe << 'EOF'\n"
              + CONFIG.format(enabled=1, idle_timeout=15)
              + "\nconfig collector 'local'\n\toption protocol 'ipfix'\n"
              "\toption host '127.0.0.1'\n\toption port '4739'\nEOF\nreload_config")
    listener = subprocess.Popen([str(SCRIPT), "exec", str(router.run_dir), "python3", "-c",
                                 LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "listening"
        router.sh("/etc/init.d/flowprobe restart")
        router.running()
        router.sh("python3 -c 'import socket; s = socket.socket(socket.AF_INET, "
                  "socket.SOCK_DGRAM); [s.sendto(b\"x\" * 100, (\"127.0.0.2\", 9)) "
                  "for _ in range(5)]'")
        router.wait("flows metered", lambda: router.status()["meter"]["packets_metered"] >= 5)
        router.sh("ubus call flowprobe expire")
        assert listener.wait(30) == 0, "no IPFIX data set reached the collector"
        assert listener.stdout.read().startswith("data set")
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def test_reload_config_good_change_reloads_in_place(router):
    router.write_config(idle_timeout="15")
    router.sh("/etc/init.d/flowprobe restart")
    pid = router.running()
    before = len(router.log())
    router.uci("set flowprobe.main.idle_timeout=30")
    router.wait("reloaded", lambda: any(m.startswith("reloaded") for _, m in router.log()[before:]))
    assert router.pid() == pid
    assert router.status()["config_error"] is None


@pytest.mark.parametrize("option, value", [
    ("idle_timeout", "soon"),      # refused by the init script's rules too (ufloat)
    ("idle_timeout", "0"),         # passes the script's rules, refused by the daemon
    ("direction", "sideways"),     # refused by the script's rules too (or(...))
])
def test_reload_config_bad_change_keeps_the_probe_running(router, option, value):
    router.write_config()
    router.sh("/etc/init.d/flowprobe restart")
    pid = router.running()
    before = len(router.log())
    router.uci(f"set flowprobe.main.{option}='{value}'")

    def refused():
        return [(level, m) for level, m in router.log()[before:] if "reload refused" in m]
    (level, message), *_ = router.wait("refused", refused)
    assert level == "daemon.err" and option in message and value in message, (level, message)
    assert router.pid() == pid, "procd stopped or restarted the probe"
    status = router.status()
    assert status and option in (status["config_error"] or ""), status
    # fixed: the next reload_config takes it, the error goes
    router.uci(f"delete flowprobe.main.{option}")
    router.wait("error cleared", lambda: router.status()["config_error"] is None)
    assert router.pid() == pid


def validation_specs():
    """The init script's validate_main list (tools/gen_schema.py writes it)."""
    text = (REPO / "files" / "etc" / "init.d" / "flowprobe").read_text()
    body = text[text.index("validate_main() {"):]
    return re.findall(r"'(\w+:[^']*)'", body[:body.index("\n}\n")])


@pytest.mark.parametrize("option, value, valid", [
    ("max_flows", "65536", True), ("max_flows", "0", False), ("max_flows", "many", False),
    ("overflow", "refuse", True), ("overflow", "drop", False),
    ("idle_timeout", "0.5", True), ("idle_timeout", "soon", False),
    ("snaplen", "63", False), ("biflow", "yes", True), ("biflow", "maybe", False),
])
def test_service_validation_comes_from_the_daemons_table(router, option, value, valid):
    """procd's own validator (validate_data, as uci_load_validate runs it)
    judges the main section by the generated list as the daemon does (for
    what its datatypes can say)."""
    router.sh("cat > /etc/config/flowprobe << 'EOF'\nconfig flowprobe 'main'\n"
              f"\toption {option} '{value}'\nEOF\n")
    specs = " ".join(f"'{spec}'" for spec in validation_specs())
    done = router.sh(f"validate_data flowprobe flowprobe main {specs}", check=False)
    assert (done.returncode == 0) == valid, (option, value, done.stdout, done.stderr)


def test_kill_9_respawns(router):
    router.write_config()
    router.sh("/etc/init.d/flowprobe restart")
    pid = router.running()
    router.sh(f"kill -9 {pid}")
    killed = time.monotonic()
    new = router.running(timeout=30)
    assert new != pid
    # procd's respawn timeout is 5 s
    assert time.monotonic() - killed >= 4, "respawned sooner than procd's 5 s"


def test_bad_value_at_start_is_a_crash_loop_with_the_reason_in_logread(router):
    router.sh("/etc/init.d/flowprobe stop")
    router.wait("stopped", lambda: router.instance() is None, 20)
    router.write_config(idle_timeout="soon")
    before = len(router.logread().splitlines())
    router.sh("/etc/init.d/flowprobe start")

    def crash_loop():
        lines = router.logread().splitlines()[before:]
        return lines if any("crash loop" in line for line in lines) else None
    lines = router.wait("in a crash loop", crash_loop, timeout=90)
    reasons = [line for line in lines if "flowprobe[" in line and "idle_timeout" in line]
    assert len(reasons) >= 5, "\n".join(lines)
    assert all(" daemon.err " in line for line in reasons), "\n".join(reasons)
    instance = router.instance()
    assert instance is not None and not instance.get("running"), instance
    # fixed and committed: reload_config starts it again
    router.uci("set flowprobe.main.idle_timeout=15")
    router.running()


def test_log_severities(router):
    router.write_config()
    router.sh("/etc/init.d/flowprobe restart")
    router.running()
    before = len(router.log())
    router.uci("set flowprobe.main.no_such_option=1")     # a warning
    router.wait("reloaded", lambda: any(m.startswith("reloaded") for _, m in router.log()[before:]))
    router.uci("set flowprobe.main.idle_timeout=-1")      # an error
    router.wait("refused", lambda: any("refused" in m for _, m in router.log()[before:]))
    lines = router.log()
    levels = {}
    for level, message in lines:
        levels.setdefault(level, []).append(message)
    info = levels.get("daemon.info", [])
    assert any("running:" in m for m in info) and any(m.startswith("reloaded") for m in info)
    assert any("no_such_option" in m for m in levels.get("daemon.warn", [])), lines
    assert any("idle_timeout" in m for m in levels.get("daemon.err", [])), lines
    # nothing the daemon says at info arrives as an error any more
    errors = levels.get("daemon.err", [])
    assert not [m for m in errors if "running:" in m or m.startswith("reloaded")], errors
    router.uci("delete flowprobe.main.idle_timeout", "delete flowprobe.main.no_such_option")


def test_logd_restarted_still_gets_the_lines(router):
    router.write_config()
    router.sh("/etc/init.d/flowprobe restart")
    pid = router.running()
    router.sh("/etc/init.d/log restart")
    router.wait("logd back", lambda: router.sh("logread", check=False).returncode == 0, 20)
    router.uci("set flowprobe.main.idle_timeout=25")
    router.wait("reloaded in the new logd",
                lambda: ("daemon.info", "reloaded /etc/config/flowprobe") in router.log())
    assert router.pid() == pid


def test_shutdown_runs_k10_and_boot_runs_s95(router):
    router.write_config()
    router.sh("/etc/init.d/flowprobe enable && /etc/init.d/flowprobe restart")
    router.running()
    # a K11 script waits (up to 10 s) for procd to have no flowprobe left:
    # only K10 can have stopped it by then; procd's SIGTERM to every process
    # comes after the last K script (/var/log is the run directory's log/)
    k11 = r"""#!/bin/sh /etc/rc.common
STOP=11
stop() {
	i=0
	while [ $i -lt 20 ]; do
		[ "$(ubus call service list '{"name":"flowprobe"}' | jsonfilter -e '@.flowprobe')" ] || {
			echo "flowprobe gone after $i half-seconds" > /var/log/k11
			return 0
		}
		i=$((i + 1))
		sleep 0.5
	done
	echo "flowprobe still there" > /var/log/k11
}
"""
    router.sh(f"cat > /etc/init.d/k11check << 'EOF'\n{k11}EOF\n"
              "chmod 755 /etc/init.d/k11check && /etc/init.d/k11check enable")
    router.script("stop", str(router.run_dir))        # poweroff: rcS K shutdown
    at_k11 = (router.run_dir / "log" / "k11").read_text()
    assert at_k11.startswith("flowprobe gone"), at_k11
    # and it flushed and ended cleanly
    messages = (router.run_dir / "log" / "messages").read_text()
    shutdown = messages[messages.rindex("- shutdown -"):]
    assert "stopping: flushing" in shutdown, shutdown

    router.script("boot", str(router.run_dir))        # what /etc held persists
    pid = router.running()
    assert router.status()["config_error"] is None
    boot = router.sh("logread").stdout
    assert "flowprobe[" in boot and pid


# ---- flowprobe.logs, everywhere ----

def syslog_pair(tmp_path):
    import socket
    path = tmp_path / "log"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    return server, path


def test_syslog_datagrams_carry_each_records_priority(tmp_path):
    import logging

    from flowprobe import logs
    server, path = syslog_pair(tmp_path)
    handlers, target, problem = logs.choose_handlers({"FLOWPROBE_LOG": "syslog"}, str(path))
    assert target == "syslog" and problem is None
    logger = logging.Logger("flowprobe-test", logging.DEBUG)
    logger.addHandler(handlers[0])
    daemon = 3 << 3
    for emit, priority in ((logger.debug, 7), (logger.info, 6), (logger.warning, 4),
                           (logger.error, 3), (logger.critical, 2)):
        emit("line\nwith %s", "args")
        datagram = server.recv(2048).decode()
        head = f"<{daemon | priority}>"
        assert datagram.startswith(head), datagram
        text = datagram[len(head):]
        # syslog(3)'s timestamp: logd strips 16 characters when the 16th is a space
        assert re.fullmatch(r"\w{3} [ \d]\d \d\d:\d\d:\d\d ", text[:16]), text
        assert text[16:] == f"flowprobe[{os.getpid()}]: line\nwith args", text
    handlers[0].close()
    server.close()


def test_without_a_syslog_socket_info_goes_to_stdout_and_warnings_to_stderr(tmp_path, capsys):
    import logging

    from flowprobe import logs
    handlers, target, problem = logs.choose_handlers({"FLOWPROBE_LOG": "syslog"},
                                                     str(tmp_path / "none"))
    assert target == "stdio" and "no syslog" in problem
    logger = logging.Logger("flowprobe-test", logging.DEBUG)
    for handler in handlers:
        logger.addHandler(handler)
    logger.info("an info")
    logger.warning("a warning")
    out, err = capsys.readouterr()
    assert out == "flowprobe: INFO: an info\n" and err == "flowprobe: WARNING: a warning\n"


def test_by_default_everything_goes_to_stderr_as_before(capsys):
    import logging

    from flowprobe import logs
    handlers, target, problem = logs.choose_handlers({})
    assert target == "stderr" and problem is None
    logger = logging.Logger("flowprobe-test", logging.DEBUG)
    logger.addHandler(handlers[0])
    logger.info("an info")
    out, err = capsys.readouterr()
    assert out == "" and err == "flowprobe: INFO: an info\n"
