"""The ubus object `flowprobe`, served through python-ubus from the daemon's
loop: python-ubus offers no file descriptor to wait on, so the daemon calls
poll() every tick (ubus.loop(0) handles whatever is pending and returns).

Install the daemon's SIGTERM/SIGINT/SIGHUP handlers before creating this:
ubus.connect() runs uloop_init(), which takes over every signal still at
SIG_DFL (libubox uloop_setup_signals).

python-ubus (CZ-NIC, 0.1.x) checks a call's arguments against the declared
signature before the callback runs, and requires *every* declared argument
(`test_policies`: passed_count == n_policy) and rejects any undeclared one.
Optional filters cannot be declared that way, so by default each method is
declared without arguments: `ubus call flowprobe status|flows|expire|reload`
work, and filtered queries go through the control socket (the CLI).  With a
python-ubus whose arguments are optional, pass typed_signatures=True.

LuCI cannot call that object: uhttpd adds `ubus_rpc_session` to every call
it forwards, which the empty signature refuses, and declaring it would make
it required from the shell.  So the same methods are published a second
time as `luci.flowprobe`, each declaring `ubus_rpc_session` (and ignoring
it: rpcd has already checked the session against the ACL).
"""

import json
import logging

from flowprobe.control.handlers import ControlError

OBJECT_NAME = "flowprobe"
WEB_OBJECT_NAME = "luci.flowprobe"   # for calls through uhttpd/rpcd (LuCI)
SESSION_ARGUMENT = "ubus_rpc_session"

log = logging.getLogger("flowprobe.control")


def _signatures(ubus):
    string, integer = ubus.BLOBMSG_TYPE_STRING, ubus.BLOBMSG_TYPE_INT32
    filters = {"address": string, "port": integer, "protocol": ubus.BLOBMSG_TYPE_UNSPEC,
               "interface": string}
    return {"status": {}, "reload": {}, "expire": dict(filters),
            "flows": dict(filters, sort=string, limit=integer)}


class UbusObject:
    def __init__(self, handlers, socket_path=None, typed_signatures=False):
        try:
            import ubus
        except ImportError:
            raise ControlError("python-ubus is not installed (no ubus object; "
                               "the control socket still works)") from None
        self.ubus, self.handlers = ubus, handlers
        self.socket_path, self.typed_signatures = socket_path, typed_signatures
        self.connected = False
        self._register()

    def _register(self):
        ubus, handlers = self.ubus, self.handlers
        socket_path, typed_signatures = self.socket_path, self.typed_signatures
        try:
            if socket_path is None:
                ubus.connect()
            else:
                ubus.connect(socket_path=str(socket_path))
        except (IOError, RuntimeError) as e:
            raise ControlError(f"cannot connect to ubusd: {str(e).strip()}") from None
        signatures = _signatures(ubus) if typed_signatures else {}
        methods = {name: {"method": self._callback(name), "signature": signatures.get(name, {})}
                   for name in handlers.METHODS}
        web_methods = {name: {"method": self._callback(name),
                              "signature": {SESSION_ARGUMENT: ubus.BLOBMSG_TYPE_STRING}}
                       for name in handlers.METHODS}
        for name, table in ((OBJECT_NAME, methods), (WEB_OBJECT_NAME, web_methods)):
            try:
                ubus.add(name, table)
            except (RuntimeError, TypeError) as e:
                ubus.disconnect()
                raise ControlError(f"cannot publish the ubus object {name}: {e}") from None
        self.connected = True

    def _callback(self, method):
        def callback(request, data):
            request.reply(self.reply(method, data))
        return callback

    def reply(self, method, data):
        """The reply object for one call. Errors are replied as {"error":
        message} (what LuCI views test for) rather than a bare ubus status,
        which would lose the message."""
        if data:
            data = {key: value for key, value in data.items() if key != SESSION_ARGUMENT}
        try:
            result = self.handlers.call(method, data or None)
            # blobmsg_add_json_from_string takes a JSON object only; find out
            # here, where the error can still be told to the caller
            if not isinstance(result, dict):
                raise TypeError(f"reply is a {type(result).__name__}, not an object")
            json.dumps(result)
        except ControlError as e:
            return {"error": str(e)}
        except Exception as e:  # the daemon outlives a bug in one method
            log.exception("ubus method %s failed", method)
            return {"error": f"{method} failed: {type(e).__name__}: {e}"}
        return result

    def poll(self):
        """Serves what is pending on the ubus socket; never blocks."""
        if self.connected:
            self.ubus.loop(0)

    def check(self):
        """After ubusd restarted (procd respawns it) the object is gone:
        find out, and publish it again. Returns whether it is published."""
        if self.connected:
            try:
                self.ubus.objects(OBJECT_NAME)
                return True
            except RuntimeError:  # a dead connection fails at once
                log.warning("lost ubusd: publishing the ubus object again")
                self.close()
        try:
            self._register()
        except ControlError as e:
            log.debug("ubus not back yet: %s", e)
        return self.connected

    def close(self):
        if self.connected:
            self.connected = False
            try:
                self.ubus.disconnect()
            except RuntimeError:
                pass
