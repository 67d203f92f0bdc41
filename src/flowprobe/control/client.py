"""The control socket's client: one request to a running flowprobe, its
reply or a ControlError a user can act on (not running, not allowed, silent).

The protocol is control/server.py's: one JSON object a line each way.
"""

import json
import socket
import time

from flowprobe.control.handlers import ControlError

MAX_REPLY = 64 * 1024 * 1024    # what the client accepts
RECEIVE_SIZE = 65536


def _encode(request):
    return json.dumps(request, separators=(",", ":")).encode() + b"\n"


def call(path, method, args=None, timeout=5.0):
    """One request to a running flowprobe; its result, or ControlError with
    the server's message (or why it could not be asked)."""
    path = str(path)
    request = {"method": method}
    if args:
        request["args"] = args
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            while True:
                try:
                    connection.connect(path)
                    break
                except BlockingIOError:
                    # a unix socket's backlog is full: the server is accepting
                    # (and evicting) as fast as it can; try again until the deadline
                    if time.monotonic() >= deadline:
                        raise socket.timeout() from None
                    time.sleep(0.01)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"flowprobe is not running (no control socket at {path})") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (the control socket is "
                               f"root's: run as root)") from None
        except socket.timeout:
            raise ControlError(f"flowprobe at {path} did not answer within "
                               f"{timeout:g} s") from None
        except OSError as e:
            raise ControlError(f"cannot connect to {path}: {e.strerror}") from None
        reply = bytearray()
        try:
            try:
                connection.sendall(_encode(request))
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused (too many clients, too large): its reason may still be there
            while b"\n" not in reply:
                connection.settimeout(max(0.001, deadline - time.monotonic()))
                data = connection.recv(RECEIVE_SIZE)
                if not data:
                    break
                reply += data
                if len(reply) > MAX_REPLY:
                    raise ControlError(f"reply from {path} larger than {MAX_REPLY} bytes")
        except socket.timeout:
            raise ControlError(f"flowprobe at {path} did not answer within "
                               f"{timeout:g} s") from None
        except ConnectionResetError:
            pass
        except OSError as e:
            raise ControlError(f"control socket {path}: {e.strerror}") from None
    line = bytes(reply).split(b"\n", 1)[0]
    if not line:
        raise ControlError(f"flowprobe at {path} closed the connection without a reply")
    try:
        decoded = json.loads(line)
        ok = decoded["ok"]
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"flowprobe at {path} sent a malformed reply") from None
    if not ok:
        raise ControlError(str(decoded.get("error", "unknown error")))
    return decoded.get("result", {})
