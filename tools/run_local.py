"""`make run`: the daemon on this machine's default-route interface, and the
live view of its busiest flows. Quitting the view (q or Ctrl-C) stops the
daemon, which flushes every flow to its collectors first.

The collectors are those of ./flowprobe.conf (UCI format, the shipped
files/etc/config/flowprobe shows every option) when it exists; without it
the flows are metered and shown, not exported.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "run"
LOCAL_CONFIG = REPO / "flowprobe.conf"


def default_route_device():
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "default"],
                                       capture_output=True, text=True, check=True).stdout)
    if not routes:
        sys.exit("run: no default route: name an interface in ./flowprobe.conf instead")
    return routes[0]["dev"]


def config_text(device, socket_path):
    if LOCAL_CONFIG.exists():
        print(f"run: using {LOCAL_CONFIG}")
        return LOCAL_CONFIG.read_text()
    print(f"run: metering {device} (both directions); no ./flowprobe.conf, so no collector")
    return (f"config flowprobe 'main'\n\toption enabled '1'\n\tlist interface '{device}'\n"
            f"\toption direction 'both'\n\toption control_socket '{socket_path}'\n")


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    socket_path = WORK / "control.sock"
    config = WORK / "flowprobe.conf"
    config.write_text(config_text(default_route_device(), socket_path))
    if LOCAL_CONFIG.exists():  # its own control socket, if it names one
        socket_path = Path(json.loads(subprocess.run(
            [sys.executable, "-c", "import json, sys; from flowprobe import config; "
             "print(json.dumps(config.load(sys.argv[1]).control_socket))", str(config)],
            capture_output=True, text=True, check=True).stdout))
    sudo = [] if os.geteuid() == 0 else ["sudo"]  # capture needs CAP_NET_RAW
    log = open(WORK / "daemon.log", "w")
    daemon = subprocess.Popen([*sudo, sys.executable, "-m", "flowprobe", "run", "--config",
                               str(config), "--no-ubus"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if socket_path.exists() or daemon.poll() is not None:
                break
            time.sleep(0.1)
        if daemon.poll() is not None:
            sys.exit(f"run: the daemon stopped:\n{(WORK / 'daemon.log').read_text()}")
        subprocess.run([*sudo, sys.executable, "-m", "flowprobe", "top", "--socket",
                        str(socket_path)])
    except KeyboardInterrupt:
        pass
    finally:
        if daemon.poll() is None:
            subprocess.run([*sudo, "kill", "-TERM", str(daemon.pid)])
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.send_signal(signal.SIGKILL)
        print(f"run: daemon log in {WORK / 'daemon.log'}")


if __name__ == "__main__":
    main()
