"""Stamped S3 requests sent over plain HTTP/1.1 keep-alive connections of our own (IO:
sockets to the S3 endpoint).

A request through aiohttp's session costs about as much CPU on the event loop as all the
rest of a small download: a request object, a response object, a stream, a writer, a
timer reset on every piece received, URL objects, header multidicts and a dozen awaits.
A stamped GET, HEAD or PUT of one object needs none of that: its URL and headers are
already built and signed (`dropbeard.store.s3objects`), its answer is a status, a few
headers and a body of known length. A `Wire` writes the request's bytes on a pooled
connection, where one `asyncio.Protocol` parses the answer as it arrives
(`dropbeard.store.s3conn`).

It replaces aiohttp's session only for the stamped requests, only where a route needs
nothing else: no proxy for the endpoint, and a TLS context taken from the session's
connector as aiobotocore built it (CA bundle, client certificate, `verify`). Listings,
multipart uploads and everything botocore sends still go through aiobotocore.

What it keeps from aiohttp's behaviour: the session's connect and read timeouts (read:
no byte for that long), its connection limit, TCP keep-alive, idle connections closed
before the server would close them, and a request on a reused connection that the server
had already closed sent again once on a new one (a GET or HEAD only: a PUT is left to the
store's retries).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import socket
import ssl
from collections import deque
from urllib.parse import urlsplit

from dropbeard.store.s3conn import HIGH_WATER, Connection, Stale, WireError
from dropbeard.store.s3route import Answer, Consume, Route
from dropbeard.store.s3sigv4 import signed_host

#: An idle connection older than this is closed rather than reused: some servers close
#: idle keep-alive connections after 5 s (Apache's default; nginx waits 75 s), and one
#: closed meanwhile costs a GET sent again, a PUT a retry (aiohttp keeps them 15 s).
IDLE_FOR = 4.0
#: Connections a store's wire opens beside its first (`Wire._open_spares`).
FIRST_SPARES = 3
#: A request that had to connect while others were in flight opens connections ahead of
#: need up to this many times the requests in flight (`Wire._open_spares`).
AHEAD = 4


class Wire:
    """Keep-alive connections to one endpoint, `origin` ("scheme://host[:port]"), for
    stamped requests (`send`, as `s3route.Route.send`)."""

    def __init__(
        self,
        origin: str,
        *,
        tls: ssl.SSLContext | None,
        connect_timeout: float | None,
        read_timeout: float | None,
        limit: int,
        first_spares: int = 0,
    ) -> None:
        parts = urlsplit(origin)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = tls if parts.scheme == "https" else None
        self._host_header = signed_host(parts.scheme, parts.netloc).encode("idna")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._slots = asyncio.Semaphore(max(1, limit))
        self._limit = max(1, limit)
        self._idle: list[Connection] = []
        self._closed = False  # connections still in use close as their requests end
        self._busy = 0  # requests holding a slot
        self._spares: deque[asyncio.Task[Connection]] = deque()  # opening ahead of need
        self.opened = 0  # connections made (for tests and benchmarks)
        self._first_spares = first_spares  # opened beside the first connection

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        consume: Consume | None = None,
    ) -> Answer:
        if not url.startswith(self.origin):
            raise ValueError(f"{url} is not on {self.origin}")
        target = url[len(self.origin) :] or "/"
        head = _request_head(method, target, self._host_header, headers, body)
        async with self._slots:
            self._busy += 1
            try:
                return await self._exchange(method, url, head, body, consume)
            finally:
                self._busy -= 1

    async def _exchange(
        self, method: str, url: str, head: bytes, body: bytes | None, consume: Consume | None
    ) -> Answer:
        for attempt in range(2):
            conn = self._reuse() or await self._claim_spare()
            reused = conn is not None
            if conn is None:
                self._open_spares()
                conn = await self._connect()
            try:
                answer = await conn.exchange(method, url, head, body, consume)
            except Stale:
                if reused and attempt == 0 and method in ("GET", "HEAD"):
                    continue
                raise WireError("the server closed the connection without answering") from None
            if conn.reusable and not self._closed:
                conn.idle_since = asyncio.get_running_loop().time()
                self._idle.append(conn)
            else:
                conn.close()
            return answer
        raise AssertionError("unreachable")

    def _open_spares(self) -> None:
        """A request found no idle connection while others are in flight: more requests
        at once than connections. Open more in the background, ahead of need, up to AHEAD
        times the requests in flight (and never past the limit), so the next wider burst
        (the next level of a tree read, the first downloads) finds them open instead of
        waiting a round trip to connect. A tree read's levels widen two to three times
        from one to the next (1, 5, 12, then 16 to 20 nodes for the anchor benchmark's
        tree): with twice, each of the first levels still waited for a connection.
        Requests, connections idle and connections opening ahead together stay within
        the limit.

        The first connection opens `first_spares` more beside it: a command's first
        request is soon followed by a few at once (`init`'s registration, probe and
        count; a sync's listing and registry), each of which would connect first."""
        if self._closed:
            return
        want = AHEAD * self._busy if self._busy >= 2 else 0
        if not (self.opened or self._idle or self._spares):  # the first connection
            want = max(want, self._busy + self._first_spares)
        have = self._busy + len(self._idle) + len(self._spares)
        for _ in range(min(want, self._limit) - have):
            task = asyncio.get_running_loop().create_task(self._connect())
            task.add_done_callback(self._spare_done)
            self._spares.append(task)

    async def _claim_spare(self) -> Connection | None:
        """A connection opening ahead of need, taken for this request; None if there is
        none, or it failed to open."""
        if not self._spares:
            return None
        task = self._spares.popleft()
        try:
            return await task
        except (OSError, TimeoutError):
            return None

    def _spare_done(self, task: asyncio.Task[Connection]) -> None:
        """A connection opened ahead of need: idle until a request takes it (a request
        that claimed it while it opened has it already)."""
        if task not in self._spares:
            return  # claimed, or dropped by `close`
        self._spares.remove(task)
        if task.cancelled() or task.exception() is not None:
            return  # the request that needs one will say why it cannot connect
        conn = task.result()
        if self._closed:
            conn.close()
        else:
            conn.reusable = True
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections, and those in use as their requests end."""
        self._closed = True
        spares, self._spares = self._spares, deque()
        for task in spares:
            if not task.done():
                task.cancel()  # it may still end opened, or failed: see _dropped
                task.add_done_callback(_dropped)
            else:
                _dropped(task)
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _reuse(self) -> Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and now - conn.idle_since < IDLE_FOR:
                return conn
            conn.close()
        return None

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        made = loop.create_connection(
            lambda: Connection(self._read_timeout),
            self._host,
            self._port,
            ssl=self._tls,
            server_hostname=self._host if self._tls is not None else None,
        )
        try:
            if self._connect_timeout:
                transport, conn = await asyncio.wait_for(made, self._connect_timeout)
            else:
                transport, conn = await made
        except TimeoutError:
            raise TimeoutError(
                f"connecting to {self._host}:{self._port} timed out "
                f"after {self._connect_timeout:g} s"
            ) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.opened += 1
        return conn


def _dropped(task: asyncio.Task[Connection]) -> None:
    """A connection opening ahead of need when its wire closed: closed if it opened, its
    failure taken (else asyncio reports it as never retrieved)."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()


def default_tls() -> ssl.SSLContext:
    """The TLS context aiobotocore gives a client with the default `verify`: botocore's
    context (TLS client, certificates and host names verified, no SSLv2/v3, compression
    or tickets) trusting the bundle botocore picks: `AWS_CA_BUNDLE`, else certifi's, else
    botocore's own. Made once per bundle (loading one costs ~20-35 ms)."""
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if not bundle:
        try:
            import certifi

            bundle = certifi.where()
        except ImportError:
            spec = importlib.util.find_spec("botocore")
            origin = spec.origin if spec is not None else None
            bundle = os.path.join(os.path.dirname(origin), "cacert.pem") if origin else None
    return _tls_trusting(bundle)


@functools.lru_cache(maxsize=4)
def _tls_trusting(bundle: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.options |= ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3 | ssl.OP_NO_COMPRESSION
    context.options |= ssl.OP_NO_TICKET
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def _request_head(
    method: str, target: str, host: bytes, headers: dict[str, str], body: bytes | None
) -> bytes:
    fields = [f"{name}: {value}" for name, value in headers.items()]
    for field in fields:
        if "\r" in field or "\n" in field:
            raise ValueError(f"header {field.partition(':')[0]!r} holds a line break")
    if body is not None and "Content-Length" not in headers:
        fields.append(f"Content-Length: {len(body)}")
    fields.append("Accept-Encoding: identity\r\n\r\n")
    return b"".join(
        (
            f"{method} {target} HTTP/1.1\r\nHost: ".encode("ascii"),
            host,
            b"\r\n",
            "\r\n".join(fields).encode("latin-1"),
        )
    )


def wire_for(route: Route, url_prefix: str) -> Wire | None:
    """A `Wire` for the requests `route` would send to `url_prefix`, if it can send them
    alike: no proxy, and for https the TLS context aiobotocore gave the session's
    connector (its CA bundle, client certificate and `verify` setting)."""
    scheme = urlsplit(url_prefix).scheme
    session = route.session
    connector = getattr(session, "connector", None)
    timeout = getattr(session, "timeout", None)
    limit = getattr(connector, "limit", None)
    tls = getattr(connector, "_ssl", None)
    if (
        route.proxy is not None
        or scheme not in ("http", "https")
        or (scheme == "https" and not isinstance(tls, ssl.SSLContext))
        or timeout is None
        or not isinstance(limit, int)
    ):
        return None
    return Wire(
        url_prefix,
        tls=tls if scheme == "https" else None,
        connect_timeout=getattr(timeout, "sock_connect", None),
        read_timeout=getattr(timeout, "sock_read", None),
        limit=limit or 100,
        first_spares=FIRST_SPARES,
    )


__all__ = ["HIGH_WATER", "Wire", "WireError", "default_tls", "wire_for"]
