"""A loopback TCP proxy in front of a real HTTP server that records the head of every
request passing through it, exactly as the client sent it (for tests of what goes on the
wire; bytes are forwarded unchanged both ways)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dropbeard.store.s3 import S3Store
from dropbeard.store.s3client import Credentials
from tests.seaweed import Seaweed


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    #: header names lower-cased
    headers: dict[str, str]


@dataclass
class HttpSpy:
    """Listens on 127.0.0.1:`port`, forwards to `upstream` (host, port)."""

    upstream: tuple[str, int]
    requests: list[RequestHead] = field(default_factory=list)
    port: int = 0
    connections: int = 0

    tls: bool = False

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        back = asyncio.ensure_future(_pipe(up_reader, writer))
        try:
            await self._requests(reader, up_writer)
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await back
            writer.close()

    async def _requests(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        """Forward requests one by one, recording each head; bodies by Content-Length."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.requests.append(_parse(head))
            up.write(head)
            length = int(self.requests[-1].headers.get("content-length", "0"))
            while length > 0:
                chunk = await reader.read(min(length, 1 << 20))
                if not chunk:
                    return
                up.write(chunk)
                length -= len(chunk)
            await up.drain()


def _parse(head: bytes) -> RequestHead:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return RequestHead(method, target, headers)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def http_spy(endpoint: str, tls: ssl.SSLContext | None = None) -> AsyncIterator[HttpSpy]:
    """A spy in front of `endpoint` (http://host:port), for the duration of the block;
    given a server context `tls`, it takes https from its clients."""
    host, port = endpoint.removeprefix("http://").rstrip("/").rsplit(":", 1)
    spy = HttpSpy((host, int(port)), tls=tls is not None)
    server = await asyncio.start_server(spy._handle, "127.0.0.1", 0, ssl=tls)
    spy.port = server.sockets[0].getsockname()[1]
    try:
        yield spy
    finally:
        server.close()


@contextlib.asynccontextmanager
async def spied_s3(
    seaweed: Seaweed, prefix: str, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[S3Store, HttpSpy]]:
    """An S3Store on SeaweedFS under a fresh `prefix-…`, its requests through a spy (over
    https, given the spy's server context `tls`)."""
    async with http_spy(seaweed.endpoint, tls) as spy:
        store = S3Store(
            seaweed.bucket,
            f"{prefix}-{uuid.uuid4().hex[:12]}",
            endpoint_url=spy.endpoint,
            addressing_style="path",
            credentials=Credentials(seaweed.access_key, seaweed.secret_key),
        )
        try:
            yield store, spy
        finally:
            await store.aclose()
