"""One HTTP/1.1 exchange at a time on a keep-alive connection, for the stamped S3
requests (`dropbeard.store.s3wire`): a request's bytes written, its answer parsed as it
arrives (IO: one socket, through the event loop's transport).

An answer's body is read by its length, chunked or until the connection closes; an
interim answer (100 Continue) is skipped; a body streamed to a consumer is read no
faster than it is consumed (the socket stops being read past HIGH_WATER). What is not an
HTTP/1.1 answer fails the exchange with a one-line `WireError`, and the connection is
not used again. The read timeout is the time with no byte of the answer: one timer per
wait, checked against the last byte's time (not a timer reset on every piece).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from dropbeard.store.s3route import Answer, Consume

#: A streamed body stops being read from the socket past this many unconsumed bytes.
HIGH_WATER = 4 << 20
#: Response heads larger than this are refused.
MAX_HEAD = 64 << 10
#: A streamed body's consumer is woken when this many bytes wait for it (or at the body's
#: end), not for every piece the socket gives: over a link with a round trip of 30 ms
#: those are mostly one or two TCP segments, and each wake-up is a task step.
WAKE_AT = 64 << 10


class WireError(ConnectionError):
    """The connection failed or the server sent what is not an HTTP/1.1 answer."""


class Stale(WireError):
    """A reused connection closed before any byte of the answer (the server had closed
    it while idle)."""


class _Response:
    """What a streamed GET's consumer gets: the answer's `headers` and its body as
    `content` (`readchunk()`: the next piece as received, and False; b"" at the end)."""

    def __init__(self, conn: Connection, headers: dict[str, str]) -> None:
        self.headers = headers
        self.content = self
        self._conn = conn

    async def readchunk(self) -> tuple[bytes, bool]:
        return await self._conn.next_piece(), False


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)
#: What an exchange waits for: the answer's head, WAKE_AT bytes of a streamed body, or
#: the whole answer.
_FOR_HEAD, _FOR_PIECES, _FOR_ALL = range(3)


class Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, read_timeout: float | None) -> None:
        self._read_timeout = read_timeout
        self._transport: Any = None
        self._loop = asyncio.get_running_loop()
        self.reusable = False
        self.idle_since = 0.0
        self._state = _DONE
        self._buffer = b""  # unparsed bytes of a head, a chunk size line or a trailer
        self._remaining = 0  # body or chunk bytes still to come
        self._pieces: deque[bytes] = deque()  # body received and not yet taken
        self._held = 0  # their bytes
        self._paused = False  # reading paused (a streamed body past HIGH_WATER)
        self._got_any = False  # a byte of this exchange's answer received
        self._wake: asyncio.Future[None] | None = None  # the exchange, waiting for data
        self._until = _FOR_HEAD  # what it waits for
        self._error: BaseException | None = None
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._head_for: str = ""
        self.status = 0
        self.headers: dict[str, str] = {}
        self._keep = True
        self._streaming = False  # a consumer takes the body piece by piece

    # -- the exchange (on the event loop, in the caller's task) --

    async def exchange(
        self, method: str, url: str, head: bytes, body: bytes | None, consume: Consume | None
    ) -> Answer:
        self.reusable = False
        self._begin(method)
        try:
            if body:
                self._transport.writelines((head, body))
            else:
                self._transport.write(head)
            if self._write_paused:  # until sent, or the connection ends (then its answer
                self._drained = self._loop.create_future()  # is read as far as it came)
                await self._drained
            while self._state == _HEAD:
                await self._wait(_FOR_HEAD)
            status, headers = self.status, self.headers
            if consume is not None and status < 300:
                self._streaming = True
                consumed = await consume(_Response(self, headers))
                if self._state != _DONE:  # the consumer stopped early: the rest is unread
                    self._keep = False
                answer = Answer(status, headers, b"", consumed)
            else:
                answer = Answer(status, headers, await self._read_all())
        except BaseException:
            self.close()
            raise
        finally:
            self._disarm()
        self.reusable = self._keep and self._transport is not None
        return answer

    def _begin(self, method: str) -> None:
        self._state = _HEAD
        self._head_for = method
        self.status = 0
        self.headers = {}
        self._pieces, self._held = deque(), 0
        self._got_any = False
        self._keep = True
        self._streaming = False

    async def _wait(self, until: int) -> None:
        """Until what `until` names arrived (or the answer ended, or the connection
        failed)."""
        if self._error is not None:
            raise self._error
        self._until = until
        self._wake = self._loop.create_future()
        self._arm()
        try:
            await self._wake
        finally:
            self._wake = None
        if self._error is not None:
            raise self._error

    async def _read_all(self) -> bytes:
        while self._state != _DONE:
            await self._wait(_FOR_ALL)
        pieces, self._pieces, self._held = self._pieces, deque(), 0
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def next_piece(self) -> bytes:
        """The next piece of a streamed body, as received; b"" at its end. Its consumer
        waits only when it took every piece, and then until WAKE_AT bytes came (or the
        body ended)."""
        while not self._pieces:
            if self._state == _DONE:
                return b""
            await self._wait(_FOR_PIECES)
        piece = self._pieces.popleft()
        self._held -= len(piece)
        if self._paused and self._held < HIGH_WATER // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return piece

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    # -- read timeout: one timer per wait, checked against the last byte's time --

    def _arm(self) -> None:
        if self._read_timeout and self._timer is None:
            self._last = self._loop.time()
            self._timer = self._loop.call_at(self._last + self._read_timeout, self._check)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._wake is None or self._read_timeout is None:
            return
        quiet = self._loop.time() - self._last
        if quiet < self._read_timeout:
            self._timer = self._loop.call_at(self._last + self._read_timeout, self._check)
            return
        self._fail(TimeoutError(f"no answer from the server for {self._read_timeout:g} s"))

    # -- the protocol (called by the event loop) --

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.reusable = False
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            self._signal()
        elif self._state != _DONE:
            reason = f": {exc}" if exc else ""
            if not self._got_any:
                self._fail(Stale(f"connection closed before the answer{reason}"))
            else:
                self._fail(WireError(f"connection closed in the middle of the answer{reason}"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            self._last = self._loop.time()
        self._got_any = True
        try:
            self._feed(data)
        except WireError as exc:
            self._fail(exc)
            return
        if (
            self._streaming
            and self._held > HIGH_WATER
            and not self._paused
            and self._transport is not None
        ):
            self._paused = True
            self._transport.pause_reading()
        if self._wake is not None and self._arrived():
            self._signal()

    def _arrived(self) -> bool:
        """Whether what the exchange waits for has arrived."""
        if self._state == _DONE:
            return True
        if self._until == _FOR_HEAD:
            return self._state != _HEAD
        return self._until == _FOR_PIECES and self._held >= WAKE_AT

    def _signal(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:  # the first failure is the one to tell
            self._error = exc
        self.reusable = False
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
        self._signal()

    def _feed(self, data: bytes) -> None:
        while data:
            state = self._state
            if state in (_LENGTH, _CHUNK_DATA):  # body bytes, as many as remain
                if len(data) <= self._remaining:
                    piece, data = data, b""  # the usual case: the whole piece, no copy
                else:
                    piece, data = data[: self._remaining], data[self._remaining :]
                self._take(piece)
                self._remaining -= len(piece)
                if not self._remaining:
                    self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _UNTIL_CLOSE:
                self._take(data)
                return
            elif state == _DONE:
                raise WireError("the server sent more than its answer")
            else:
                data = self._feed_line(data)

    def _feed_line(self, data: bytes) -> bytes:
        """Bytes of the head or of a chunked body's framing; what follows them."""
        buffer = self._buffer + data if self._buffer else data
        head = self._state == _HEAD
        end = buffer.find(b"\r\n\r\n" if head else b"\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                what = "the answer's head" if head else "a chunked body's framing line"
                raise WireError(f"{what} is too long")
            self._buffer = buffer
            return b""
        self._buffer = b""
        if head:
            self._parse_head(buffer[:end])
            return buffer[end + 4 :]
        line, rest = buffer[:end], buffer[end + 2 :]
        if self._state == _CHUNK_SIZE:
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise WireError(f"bad chunk size line {line[:40]!r}") from None
            if size < 0:
                raise WireError(f"bad chunk size line {line[:40]!r}")
            self._remaining = size
            self._state = _CHUNK_DATA if size else _TRAILER
        elif self._state == _CHUNK_END:
            if line:
                raise WireError("a chunk runs past its size")
            self._state = _CHUNK_SIZE
        elif self._state == _TRAILER and not line:
            self._state = _DONE
        return rest

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")  # one decode for the whole head
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise WireError(f"not an HTTP/1.1 answer: {lines[0][:60]!r}")
        try:
            self.status = int(status_line[1])
        except ValueError:
            raise WireError(f"bad status line {lines[0][:60]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise WireError(f"bad header line {line[:60]!r}")
            key = name.strip().lower()
            text = value.strip()
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self._keep = status_line[0] != "HTTP/1.0" and "close" not in connection
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self._state, self.status, self.headers = _HEAD, 0, {}
            return
        if self._head_for == "HEAD" or self.status in (204, 304):
            self._state = _DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise WireError("bad Content-Length") from None
            if self._remaining < 0:
                raise WireError("bad Content-Length")
            self._state = _LENGTH if self._remaining else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._keep = False

    def _take(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._held += len(piece)
