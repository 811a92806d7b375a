"""sd_notify for systemd `Type=notify` units: one datagram to `$NOTIFY_SOCKET` (IO: a Unix
datagram socket; no dependency). Without `NOTIFY_SOCKET` every call is a no-op."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def sd_notify(*lines: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `lines` (e.g. "READY=1", "STATUS=2 roots idle") as one message; True if sent.

    Failures are swallowed: a missing or gone supervisor must never stop the daemon."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if address.startswith("@"):  # Linux abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a transport we do not speak (vsock)
    message = "\n".join(lines).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError:
        return False
    return True
