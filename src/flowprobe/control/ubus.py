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

A daemon started before ubusd (or while it restarts) keeps trying: the
object is created unconnected and check(), which the daemon calls every few
seconds, connects and publishes once ubusd answers. After a failed attempt
the next one waits RETRY_BACKOFF_S[n] more (0, then doubling to a minute), so
a ubusd that stays away costs one connect a minute, not one a tick; a
connection lost after it worked is tried again at once, as before.

LuCI cannot call that object: uhttpd adds `ubus_rpc_session` to every call
it forwards, which the empty signature refuses, and declaring it would make
it required from the shell.  So the same methods are published a second
time as `luci.flowprobe`, each declaring `ubus_rpc_session` (and ignoring
it: rpcd has already checked the session against the ACL).

`query` (the history store) declares one argument on both objects, always:
`query`, a string holding the query as a JSON object (store/query.py), so
that every declared argument can be given: `ubus call flowprobe query
'{"query": "{\"since\": \"24h\", \"group_by\": [\"host\"]}"}'`.
"""

import json
import logging
import time

from flowprobe.control.handlers import ControlError

OBJECT_NAME = "flowprobe"
WEB_OBJECT_NAME = "luci.flowprobe"   # for calls through uhttpd/rpcd (LuCI)
SESSION_ARGUMENT = "ubus_rpc_session"
QUERY_ARGUMENT = "query"       # the history query, as JSON text

# the wait before the next attempt after 1, 2, 3 ... failed ones (seconds;
# the daemon calls check() every UBUS_CHECK_S on top of this)
RETRY_BACKOFF_S = (0.0, 5.0, 10.0, 20.0, 40.0, 60.0)

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
        self.failures, self.retry_at = 0, 0.0
        try:
            self._register()
        except ControlError as e:
            self._failed(e)
            log.warning("%s: the ubus object is published once ubusd answers (trying again "
                        "with back-off up to %d s)", e, RETRY_BACKOFF_S[-1])

    def _failed(self, error):
        self.failures += 1
        wait = RETRY_BACKOFF_S[min(self.failures, len(RETRY_BACKOFF_S)) - 1]
        self.retry_at = time.monotonic() + wait
        log.debug("ubus not there yet (attempt %d; next in %g s or more): %s",
                  self.failures, wait, error)

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
        signatures["query"] = {QUERY_ARGUMENT: ubus.BLOBMSG_TYPE_STRING}
        methods = {name: {"method": self._callback(name), "signature": signatures.get(name, {})}
                   for name in handlers.METHODS}
        web_methods = {name: {"method": self._callback(name),
                              "signature": dict(signatures["query"] if name == "query" else {},
                                                **{SESSION_ARGUMENT: ubus.BLOBMSG_TYPE_STRING})}
                       for name in handlers.METHODS}
        for name, table in ((OBJECT_NAME, methods), (WEB_OBJECT_NAME, web_methods)):
            try:
                ubus.add(name, table)
            except (RuntimeError, TypeError) as e:
                ubus.disconnect()
                raise ControlError(f"cannot publish the ubus object {name}: {e}") from None
        self.connected = True
        if self.failures:
            log.info("ubus object %s published (after %d attempts)", OBJECT_NAME,
                     self.failures + 1)
        self.failures, self.retry_at = 0, 0.0

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
            if method == "query":
                data = query_argument(data)
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
        """After ubusd restarted (procd respawns it) the object is gone, and
        before ubusd first came up it was never there: find out, and publish
        it (with back-off while that keeps failing). Returns whether it is
        published."""
        if self.connected:
            try:
                self.ubus.objects(OBJECT_NAME)
                return True
            except RuntimeError:  # a dead connection fails at once
                log.warning("lost ubusd: publishing the ubus object again")
                self.close()
        if time.monotonic() < self.retry_at:
            return False
        try:
            self._register()
        except ControlError as e:
            self._failed(e)
        return self.connected

    def close(self):
        if self.connected:
            self.connected = False
            try:
                self.ubus.disconnect()
            except RuntimeError:
                pass


def query_argument(data):
    """The query object from ubus's one string argument (ControlError if it
    is not a JSON object)."""
    text = (data or {}).get(QUERY_ARGUMENT)
    if not isinstance(text, str):
        raise ControlError(f"query: the argument {QUERY_ARGUMENT!r} must be a string holding "
                           "the query as a JSON object")
    from flowprobe.control.server import MAX_DEPTH, MAX_REQUEST, nesting_depth
    if len(text) > MAX_REQUEST or nesting_depth(text) > MAX_DEPTH:
        raise ControlError(f"query: longer than {MAX_REQUEST} characters or nested deeper "
                           f"than {MAX_DEPTH} levels")
    try:
        query = json.loads(text)
    except ValueError as e:
        raise ControlError(f"query: not JSON: {e}") from None
    if not isinstance(query, dict):
        raise ControlError("query: must be a JSON object")
    return query
