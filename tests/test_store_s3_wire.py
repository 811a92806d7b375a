"""The stamped requests' own HTTP/1.1 connections (dropbeard.store.s3wire), against a
loopback server that answers as scripted: bodies by length, chunked or until close,
interim answers, keep-alive and its failures, timeouts, flow control, broken answers.
(The S3 suites send every stamped request of theirs through a wire to SeaweedFS.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from dropbeard.core.errors import Unavailable
from dropbeard.store import s3conn, s3wire
from dropbeard.store.s3errors import translate
from dropbeard.store.s3wire import HIGH_WATER, Wire, WireError

pytestmark = pytest.mark.anyio

#: answer(request head, request body, writer) -> keep the connection open?
Script = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """127.0.0.1, an ephemeral port; each request answered by the next script (the last
    one repeats); the request heads it received and the connections it accepted."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.open = self.peak_open = 0  # connections open at once
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.heads.append(head)
                self.bodies.append(body)
                script = self.scripts[min(len(self.heads), len(self.scripts)) - 1]
                try:
                    if not await script(head, body, writer):
                        return
                except ConnectionError:  # the client hung up (as it may)
                    return
        finally:
            self.open -= 1
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[tuple[Server, Wire]]]]:
    servers: list[asyncio.Server] = []
    wires: list[Wire] = []

    async def start(
        *scripts: Script, read_timeout: float = 5.0, first_spares: int = 0
    ) -> tuple[Server, Wire]:
        server = Server(list(scripts))
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        server.port = listening.sockets[0].getsockname()[1]
        wire = Wire(
            f"http://127.0.0.1:{server.port}/bucket",
            tls=None,
            connect_timeout=5.0,
            read_timeout=read_timeout,
            limit=8,
            first_spares=first_spares,
        )
        wires.append(wire)
        return server, wire

    yield start
    for wire in wires:
        wire.close()
    for listening in servers:
        listening.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listening.wait_closed(), 1)


def answer(
    status: int = 200, body: bytes = b"", headers: tuple[str, ...] = (), keep: bool = True
) -> Script:
    async def script(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return keep

    return script


def raw(data: bytes, *, keep: bool = True, bytewise: bool = False) -> Script:
    async def script(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        for i in range(len(data)) if bytewise else [None]:
            writer.write(data if i is None else data[i : i + 1])
            await writer.drain()
        return keep

    return script


async def get(wire: Wire, key: str = "k", **kw: Any) -> s3wire.Answer:
    return await wire.send("GET", f"{wire.origin}/bucket/{key}", {"X-Amz-Date": "d"}, None, **kw)


async def test_a_get_and_its_body_then_the_connection_is_kept_for_the_next(serve: Any) -> None:
    server, wire = await serve(answer(200, b"hello", ('ETag: "e"',)))
    first = await get(wire, "a%20b")
    second = await get(wire, "c")
    assert (first.status, first.body, first.headers["etag"]) == (200, b"hello", '"e"')
    assert second.body == b"hello"
    assert server.connections == wire.opened == 1
    lines = server.heads[0].split(b"\r\n")
    assert lines[0] == b"GET /bucket/a%20b HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Accept-Encoding: identity" in lines and b"X-Amz-Date: d" in lines


async def test_a_put_sends_its_body_with_its_length(serve: Any) -> None:
    server, wire = await serve(answer(200, b"", ('ETag: "p"',)))
    body = bytes(range(256)) * 4096  # 1 MiB
    got = await wire.send("PUT", f"{wire.origin}/bucket/k", {}, body)
    assert (got.status, got.headers["etag"], got.body) == (200, '"p"', b"")
    assert server.bodies == [body]
    assert b"Content-Length: 1048576" in server.heads[0]


async def test_a_chunked_body_arriving_a_byte_at_a_time(serve: Any) -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    server, wire = await serve(raw(data, bytewise=True), answer(200, b"next"))
    assert (await get(wire)).body == b"hello world"
    assert (await get(wire)).body == b"next"  # the framing ended where it should
    assert server.connections == 1


async def test_an_interim_answer_is_skipped(serve: Any) -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    _server, wire = await serve(raw(data))
    got = await get(wire)
    assert (got.status, got.body) == (200, b"ok")


async def test_a_head_answer_has_no_body_whatever_its_length_says(serve: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    server, wire = await serve(raw(head), answer(200, b"after"))
    got = await wire.send("HEAD", f"{wire.origin}/bucket/k", {}, None)
    assert (got.status, got.headers["content-length"], got.body) == (200, "10", b"")
    assert (await get(wire)).body == b"after"
    assert server.connections == 1


async def test_an_error_answer_carries_its_body_and_headers(serve: Any) -> None:
    xml = b"<Error><Code>NoSuchKey</Code></Error>"
    _server, wire = await serve(answer(404, xml, ("Content-Type: application/xml",)))
    got = await get(wire)
    assert (got.status, got.body) == (404, xml)
    assert got.headers["content-type"] == "application/xml"


async def test_a_connection_the_server_closed_while_idle_is_not_reused(serve: Any) -> None:
    server, wire = await serve(answer(200, b"1", keep=False))
    assert (await get(wire)).body == b"1"
    await asyncio.sleep(0.05)  # the server's close has arrived
    assert (await get(wire)).body == b"1"
    assert server.connections == 2


async def test_a_get_on_a_connection_found_closed_is_sent_again_a_put_is_not(
    serve: Any,
) -> None:
    """The server's close arrives only once the next request is on its way: a GET is sent
    again on a new connection; a PUT fails (the store's retries decide)."""
    server, wire = await _reused_after_silent_close(serve)
    assert (await get(wire)).body == b"1"
    assert server.connections == 2
    with pytest.raises(WireError, match="without answering"):
        await _reused_after_silent_close(serve, method="PUT")


async def _reused_after_silent_close(serve: Any, method: str | None = None) -> Any:
    """A wire whose one idle connection the server has closed unseen (the close is held
    back from the protocol): with `method`, that request sent on it."""
    server, wire = await serve(answer(200, b"1"))
    assert (await get(wire)).body == b"1"
    conn = wire._idle[0]
    transport = conn._transport
    conn.connection_lost = lambda exc: None  # type: ignore[method-assign]
    transport.abort()
    await asyncio.sleep(0.05)
    conn._transport = _DeadTransport(conn)
    del conn.connection_lost
    if method is not None:
        await wire.send(method, f"{wire.origin}/bucket/k", {}, b"x")
    return server, wire


class _DeadTransport:
    """A transport whose peer is gone: what is written is lost, then the loss is seen."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def write(self, _data: bytes) -> None:
        asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    def writelines(self, data: Any) -> None:
        self.write(b"")

    def abort(self) -> None:
        pass


async def test_a_connection_lost_mid_body_fails_the_request_and_is_not_reused(
    serve: Any,
) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"
    server, wire = await serve(raw(data, keep=False), answer(200, b"fine"))
    with pytest.raises(WireError, match="middle of the answer"):
        await get(wire)
    assert (await get(wire)).body == b"fine"
    assert server.connections == 2
    with (  # what the store's retries take as a transient failure
        pytest.raises(Unavailable, match="server unreachable"),
        translate("downloading", "k"),
    ):
        raise WireError("connection closed in the middle of the answer")


async def test_no_byte_for_the_read_timeout_fails_the_request(serve: Any) -> None:
    async def stall(_h: bytes, _b: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(3)
        return False

    _server, wire = await serve(stall, read_timeout=0.3)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no answer from the server for 0\.3 s"):
        await get(wire)
    assert time.monotonic() - began < 2


async def test_a_slow_trickle_is_not_a_timeout(serve: Any) -> None:
    async def trickle(_h: bytes, _b: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n")
        for byte in b"abcdefghijklmnop":
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
            await writer.drain()
        return True

    # 1.6 s in all, never silent for the 0.8 s timeout (a margin for a loaded machine)
    _server, wire = await serve(trickle, read_timeout=0.8)
    began = time.monotonic()
    assert (await get(wire)).body == b"abcdefghijklmnop"
    assert time.monotonic() - began > 0.8


async def test_a_streamed_body_is_read_no_faster_than_it_is_consumed(serve: Any) -> None:
    size = 24 << 20
    _server, wire = await serve(answer(200, b"\xab" * size))
    seen: list[int] = []

    async def consume(response: Any) -> int:
        got = 0
        while piece := (await response.content.readchunk())[0]:
            got += len(piece)
            await asyncio.sleep(0.002)  # a slow disk
            seen.append(response._conn._held)
        return got

    got = await get(wire, consume=consume)
    assert got.consumed == size
    assert max(seen) <= HIGH_WATER + (1 << 20)  # held: at most the mark and one read


async def test_a_consumer_that_stops_early_leaves_a_closed_connection(serve: Any) -> None:
    server, wire = await serve(answer(200, b"x" * (3 * HIGH_WATER)))

    async def first_piece(response: Any) -> int:
        return len((await response.content.readchunk())[0])

    assert (await get(wire, consume=first_piece)).consumed > 0
    assert len((await get(wire)).body) == 3 * HIGH_WATER  # the rest was not taken for this
    assert server.connections == 2


async def test_connection_close_and_http_1_0_bodies_until_close(serve: Any) -> None:
    server, wire = await serve(
        answer(200, b"a", ("Connection: close",), keep=False),
        raw(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", keep=False),
        answer(200, b"c"),
    )
    assert (await get(wire)).body == b"a"
    assert (await get(wire)).body == b"until the end"
    assert (await get(wire)).body == b"c"
    assert server.connections == 3


async def test_an_idle_connection_past_its_age_is_not_reused(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3wire, "IDLE_FOR", 0.0)
    server, wire = await serve(answer(200, b"a"))
    await get(wire)
    await get(wire)
    assert server.connections == 2


@pytest.mark.parametrize(
    "data, error",
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.1 answer"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", "more than its answer"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000, "head is too long"),
    ],
)
async def test_what_is_not_an_http_answer_fails_the_request(
    serve: Any, data: bytes, error: str
) -> None:
    _server, wire = await serve(raw(data), answer(200, b"ok"))
    with pytest.raises(WireError, match=error):
        await get(wire)
    assert (await get(wire)).body == b"ok"  # on a new connection


async def test_a_header_value_with_a_line_break_is_refused_before_sending(serve: Any) -> None:
    server, wire = await serve(answer(200, b"ok"))
    with pytest.raises(ValueError, match="line break"):
        await wire.send("GET", f"{wire.origin}/bucket/k", {"X-A": "1\r\nX-B: 2"}, None)
    assert server.heads == []


async def test_requests_in_flight_stay_within_the_limit(serve: Any) -> None:
    in_flight = peak = 0

    async def slow(_h: bytes, _b: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")
        await writer.drain()
        return True

    server, wire = await serve(slow)
    got = await asyncio.gather(*(get(wire) for _ in range(30)))
    assert {a.body for a in got} == {b"z"}
    assert peak == 8 and server.peak_open == 8


async def test_a_widening_burst_finds_connections_opened_ahead_of_it(serve: Any) -> None:
    """A tree read's levels come in bursts wider each time: requests in flight that
    had to connect open connections for four times as many (up to the limit) while they
    run, so the next burst, even two or three times as wide, does not wait a round trip
    to connect."""

    async def slow(_h: bytes, _b: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")
        await writer.drain()
        return True

    server, wire = await serve(slow)
    await get(wire)
    assert server.connections == 1  # one request at a time: nothing opened ahead
    await asyncio.gather(*(get(wire) for _ in range(2)))
    assert server.connections == wire.opened == 8  # 2 in flight: 4 times as many
    await asyncio.gather(*(get(wire) for _ in range(8)))
    assert server.connections == 8  # the wider burst found them open
    await asyncio.gather(*(get(wire) for _ in range(20)))
    assert server.peak_open == 8  # never past the limit


async def test_the_first_connection_opens_a_few_more_beside_it(serve: Any) -> None:
    """A command's first request is soon followed by a few at once (init's registration,
    probe and count; a sync's listing and registry): they find connections open."""

    async def slow(_h: bytes, _b: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")
        await writer.drain()
        return True

    server, wire = await serve(slow, first_spares=3)
    await get(wire)
    assert server.connections == wire.opened == 4  # the one in use, and 3 beside it
    await asyncio.gather(*(get(wire) for _ in range(4)))
    assert server.connections == 4  # the burst found them open
    await get(wire)
    assert server.connections == 4  # not the first any more: nothing more ahead


async def test_a_closed_wire_keeps_no_connection(serve: Any) -> None:
    server, wire = await serve(answer(200, b"a"))
    await get(wire)
    pending = asyncio.ensure_future(get(wire))
    await asyncio.sleep(0)
    wire.close()
    assert (await pending).body == b"a"  # a request under way ends as it would
    assert wire._idle == []
    await asyncio.sleep(0.05)
    assert server.connections == 1


class _Transport:
    """What a Connection asks of its transport, for feeding it by hand."""

    def write(self, data: bytes) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        pass


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
async def test_a_body_in_small_segments_wakes_its_reader_per_wake_at_bytes_or_once(
    streamed: bool,
) -> None:
    """Over a link with a 30 ms round trip a body arrives one or two TCP segments at a
    time: a streamed body's consumer is woken once per WAKE_AT bytes, a whole body's
    reader once at its end, not once per segment; both get every byte, in order."""
    conn = s3conn.Connection(read_timeout=None)
    conn.connection_made(_Transport())
    segments = [bytes([i % 251]) * 1460 for i in range(1000)]
    body = b"".join(segments)
    waits = 0
    wait = conn._wait

    async def counted(*until: int) -> None:
        nonlocal waits
        waits += 1
        await wait(*until)

    conn._wait = counted  # type: ignore[method-assign]

    async def consume(response: Any) -> bytes:
        pieces = []
        while piece := (await response.content.readchunk())[0]:
            pieces.append(piece)
        return b"".join(pieces)

    async def feed() -> None:
        await asyncio.sleep(0)  # the request is sent
        conn.data_received(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for segment in segments:
            await asyncio.sleep(0)  # the consumer may run between any two segments
            conn.data_received(segment)

    exchange = asyncio.ensure_future(
        conn.exchange("GET", "/k", b"GET /k\r\n\r\n", None, consume if streamed else None)
    )
    await feed()
    answer = await exchange
    if streamed:
        assert answer.consumed == body
        assert waits <= len(body) // s3conn.WAKE_AT + 3  # the head, each WAKE_AT, the end
    else:
        assert answer.body == body
        assert waits == 2  # the head, the end
