"""STAND-IN for uhttpd + rpcd + LuCI's dispatcher, for the browser test of
luci-app-flowprobe (LuCI's runtime and rpcd are not available offline).

It serves the app's views through the client stand-in (luci_standin/*.js)
and answers their ubus JSON-RPC calls as rpcd would, checking each against
the app's own ACL file (acl.d/luci-app-flowprobe.json):
- `luci.flowprobe` methods (the daemon's ubus methods as published for
  uhttpd) go to the running daemon's real control socket
  (flowprobe.control.client.call); no daemon there is rpcd's "Object not
  found";
- `uci get|add|set|delete` read and stage changes of the daemon's real config
  file; `uci apply` (LuCI's Save & Apply) writes the file and then reloads the
  daemon, as procd's config trigger does on a router: with SIGHUP (the init
  script's reload_signal) when the daemon's pid and log are given, its
  outcome read from the log; else through the control socket's `reload`;
- anything the ACL does not grant is rpcd's "Access denied".
Every call is recorded (`calls`), so a test can hold the ACL against what the
views really called.
"""

import json
import os
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flowprobe.config import read_sections
from flowprobe.control.client import call
from flowprobe.control.handlers import ControlError
from flowprobe.control.ubus import WEB_OBJECT_NAME

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "luci_standin"
APP = HERE.parent.parent / "luci-app-flowprobe"
RESOURCES = APP / "htdocs" / "luci-static" / "resources"
ACL_FILE = APP / "root" / "usr" / "share" / "rpcd" / "acl.d" / "luci-app-flowprobe.json"
MENU_FILE = APP / "root" / "usr" / "share" / "luci" / "menu.d" / "luci-app-flowprobe.json"
STANDIN_MODULES = {"view", "rpc", "uci", "ui", "poll", "form", "network", "tools/widgets"}
# what LuCI itself calls (luci-base's own ACL grants it), not the views
FRAMEWORK_CALLS = {("uci", "apply"), ("uci", "confirm")}
UCI_READ = {"get"}
UCI_WRITE = {"add", "set", "delete"}
OBJECT_NOT_FOUND = (-32000, "Object not found")   # uhttpd-mod-ubus's JSON-RPC errors
ACCESS_DENIED = (-32002, "Access denied")
DAEMON_OBJECT = WEB_OBJECT_NAME   # the daemon's methods as published for uhttpd

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title} - LuCI (stand-in)</title>
<link rel="stylesheet" href="/luci-static/standin.css">
<script src="/luci-static/resources/luci.js"></script></head>
<body data-view="{view}">
<header><span class="brand">OpenWrt (LuCI stand-in)</span>{menu}</header>
<div id="maincontent"><div id="notifications"></div><div id="view"></div></div>
</body></html>
"""


def uci_quote(value):
    """As `uci export` writes a value: in single quotes, ' as '\\''."""
    return "'" + value.replace("'", "'\\''") + "'"


class UciFile:
    """One UCI config file with changes staged until apply, as rpcd keeps
    them per session (in /tmp/.uci) until `uci apply` commits them."""

    def __init__(self, path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.sections = []
        self.read()

    def read(self):
        self.read_at = self.path.stat().st_mtime_ns
        self.sections = []
        for number, section in enumerate(read_sections(self.path.read_text(), str(self.path))):
            self.sections.append({
                "type": section.type, "anonymous": section.name is None,
                "name": section.name or "cfg%02x%04x" % (number, number * 4099 % 65536),
                "options": dict(section.options)})
        self.staged = [dict(s, options=dict(s["options"])) for s in self.sections]
        self.dirty = False

    def values(self):
        if self.path.stat().st_mtime_ns != self.read_at:
            self.read()   # changed by hand (vi, uci commit): rpcd reads the file anew
        return {s["name"]: dict(s["options"], **{".type": s["type"], ".name": s["name"],
                                                ".anonymous": s["anonymous"], ".index": i})
                for i, s in enumerate(self.staged)}

    def find(self, name):
        return next((s for s in self.staged if s["name"] == name), None)

    def add(self, kind, name, values):
        name = name or "cfg%02x%04x" % (len(self.staged), len(self.staged) * 7919 % 65536)
        if self.find(name) is None:
            self.staged.append({"type": kind, "anonymous": False, "name": name, "options": {}})
        self.set(name, values or {})
        return name

    def set(self, name, values):
        section = self.find(name)
        if section is None:
            raise KeyError(name)
        self.dirty = True
        for option, value in values.items():
            section["options"][option] = ([str(v) for v in value] if isinstance(value, list)
                                          else str(value))

    def delete(self, name, options):
        self.dirty = True
        if options is None:
            self.staged = [s for s in self.staged if s["name"] != name]
            return
        section = self.find(name)
        if section is None:
            raise KeyError(name)
        for option in options:
            section["options"].pop(option, None)

    def text(self):
        lines = []
        for section in self.staged:
            header = f"config {section['type']}"
            if not section["anonymous"]:
                header += " " + uci_quote(section["name"])
            lines.append(header)
            for option, value in section["options"].items():
                if isinstance(value, list):
                    lines += [f"\tlist {option} {uci_quote(v)}" for v in value]
                else:
                    lines.append(f"\toption {option} {uci_quote(value)}")
            lines.append("")
        return "\n".join(lines)

    def commit(self):
        self.path.write_text(self.text())
        self.read()


class StandinLuci:
    """with StandinLuci(socket, config_path, networks) as luci: luci.url(page)"""

    def __init__(self, control_socket, config_path, networks=(), daemon=None):
        """daemon: (pid, log path) to reload it with SIGHUP, as procd does."""
        self.control_socket = str(control_socket)
        self.daemon = daemon
        self.uci = {"flowprobe": UciFile(config_path)}
        self.networks = [{"name": name, "up": True} for name in networks]
        self.acl = json.loads(ACL_FILE.read_text())["luci-app-flowprobe"]
        self.menu = json.loads(MENU_FILE.read_text())
        self.calls = []        # (object, method, config or None, verdict)
        self.reloads = []      # the daemon's replies to the reloads apply made
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, page):
        return f"http://127.0.0.1:{self.server.server_address[1]}/cgi-bin/luci/{page}"

    # ---- rpcd's side ----

    def granted(self, scope, name, method=None):
        for access in ("read", "write"):
            grant = self.acl.get(access, {}).get(scope)
            if grant is None:
                continue
            if scope == "ubus" and method in grant.get(name, []):
                return access
            if scope == "uci" and name in grant and (
                    (access == "read" and method in UCI_READ) or
                    (access == "write" and method in UCI_WRITE)):
                return access
        return None

    def ubus(self, session, obj, method, args):
        """(error, result) of one JSON-RPC call, as uhttpd-mod-ubus + rpcd."""
        args = args or {}
        if (obj, method) in FRAMEWORK_CALLS:
            self.calls.append((obj, method, None, "framework"))
            return None, self.apply()
        config = args.get("config") if obj == "uci" else None
        access = self.granted("uci", config, method) if obj == "uci" else \
            self.granted("ubus", obj, method)
        self.calls.append((obj, method, config, access or "denied"))
        if access is None:
            return ACCESS_DENIED, None
        if obj == DAEMON_OBJECT:
            try:
                return None, [0, call(self.control_socket, method, args or None)]
            except ControlError as e:
                if "not running" in str(e):
                    return OBJECT_NOT_FOUND, None
                return None, [0, {"error": str(e)}]   # as the ubus object replies errors
        return None, self.uci_call(method, args)

    def uci_call(self, method, args):
        config = self.uci.get(args.get("config"))
        if config is None:
            return [4]   # UBUS_STATUS_NOT_FOUND
        with config.lock:
            try:
                if method == "get":
                    return [0, {"values": config.values()}]
                if method == "add":
                    return [0, {"section": config.add(args["type"], args.get("name"),
                                                      args.get("values"))}]
                if method == "set":
                    config.set(args["section"], args.get("values") or {})
                    return [0]
                config.delete(args["section"], args.get("options"))
                return [0]
            except KeyError:
                return [4]

    def apply(self):
        """rpcd's uci apply: commit; then procd's config trigger reloads the
        service. Nothing staged: rpcd's "no data" (LuCI says there are no
        changes to apply)."""
        if not any(config.dirty for config in self.uci.values()):
            return [5]   # UBUS_STATUS_NO_DATA
        for config in self.uci.values():
            with config.lock:
                config.commit()
        if self.daemon is not None:
            self.reloads.append(self.signal_reload(*self.daemon))
            return [0]
        try:
            self.reloads.append(call(self.control_socket, "reload"))
        except ControlError as e:
            self.reloads.append({"error": str(e)})
        return [0]

    @staticmethod
    def signal_reload(pid, log_path, timeout=15):
        """procd's reload: SIGHUP; the outcome as the daemon logs it (as the
        control socket's reload would reply)."""
        log_path = Path(log_path)
        start = log_path.stat().st_size
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return {"error": "not running"}
        refused = "reload refused, still running the previous config: "
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(log_path, errors="replace") as log:
                log.seek(start)
                for line in log.read().splitlines():
                    if refused in line:
                        return {"reloaded": False, "error": line.split(refused, 1)[1]}
                    if ": reloaded " in line:
                        return {"reloaded": True, "error": None}
            time.sleep(0.05)
        return {"error": f"no reload in the daemon's log within {timeout} s"}

    # ---- the dispatcher's side ----

    def page(self, path):
        node = self.menu.get(path)
        if node is None:
            return None
        if node.get("action", {}).get("type") == "firstchild":
            children = sorted((n.get("order", 0), p) for p, n in self.menu.items()
                              if p.startswith(path + "/"))
            return self.page(children[0][1]) if children else None
        view = node["action"]["path"]
        links = "".join(
            f'<a href="/cgi-bin/luci/{p}" class="{"active" if p == path else ""}">{n["title"]}</a>'
            for p, n in sorted(self.menu.items(), key=lambda item: item[1].get("order", 0))
            if n.get("action", {}).get("type") == "view")
        return PAGE.format(title=node["title"], view=view, menu=links)

    def _handler(self):
        luci = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body, kind="application/json"):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                if path.startswith("/cgi-bin/luci/"):
                    page = luci.page(path[len("/cgi-bin/luci/"):].rstrip("/"))
                    if page is None:
                        return self.reply(404, "no such page", "text/plain")
                    return self.reply(200, page, "text/html; charset=utf-8")
                if path == "/luci-static/standin.css":
                    return self.reply(200, (STANDIN / "standin.css").read_bytes(), "text/css")
                if path == "/standin/networks":
                    return self.reply(200, json.dumps(luci.networks))
                match = re.fullmatch(r"/luci-static/resources/([A-Za-z0-9_/.-]+)\.js", path)
                if match and ".." not in match.group(1):
                    name = match.group(1)
                    base = STANDIN if name in STANDIN_MODULES or name == "luci" else RESOURCES
                    file = base / f"{name}.js"
                    if file.is_file():
                        return self.reply(200, file.read_bytes(), "application/javascript")
                self.reply(404, "not found", "text/plain")

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                try:
                    message = json.loads(self.rfile.read(length))
                    session, obj, method, args = message["params"]
                except (ValueError, KeyError, TypeError):
                    return self.reply(400, json.dumps({"jsonrpc": "2.0", "error": {
                        "code": -32700, "message": "Parse error"}}))
                error, result = luci.ubus(session, obj, method, args)
                frame = {"jsonrpc": "2.0", "id": message.get("id")}
                if error:
                    frame["error"] = {"code": error[0], "message": error[1]}
                else:
                    frame["result"] = result
                self.reply(200, json.dumps(frame))

        return Handler
