"""aiohttp imported without building its default TLS contexts' certificate stores
(IO: imports a module; patches `ssl` for the length of that import).

At import, `aiohttp.connector` builds two default `SSLContext`s and loads the system's CA
bundle into both: ~70 ms of a command's start here (a 220 kB bundle parsed twice), on
every run, though dropbeard never uses them. aiobotocore hands aiohttp a context of its
own, built from the client's `verify` setting (and none is needed for a plain http
endpoint). Importing this module imports `aiohttp.connector` with certificate loading
skipped: its default contexts still require verification, with no CA to verify against,
so anything that did use them would fail closed (a certificate error), never connect
unverified.

Imported first by the S3 store's deferred import (`dropbeard.store.factory`). A process
that imported aiohttp already keeps what it built.
"""

from __future__ import annotations

import ssl
import sys
import threading

_LOCK = threading.Lock()


def _skip(_context: ssl.SSLContext) -> None:
    """`SSLContext.set_default_verify_paths` while aiohttp builds its defaults."""


def import_aiohttp_connector() -> None:
    """Import `aiohttp.connector` (once) without loading CA certificates for it."""
    if "aiohttp.connector" in sys.modules:
        return
    with _LOCK:
        if "aiohttp.connector" in sys.modules:
            return
        real = ssl.SSLContext.set_default_verify_paths
        ssl.SSLContext.set_default_verify_paths = _skip  # type: ignore[method-assign, assignment]
        try:
            import aiohttp.connector  # noqa: F401
        finally:
            ssl.SSLContext.set_default_verify_paths = real  # type: ignore[method-assign]


import_aiohttp_connector()
