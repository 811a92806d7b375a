"""RetryingStore: retries transient store failures with backoff (IO only through `inner`).

Only `Unavailable` is retried, with exponential backoff and full jitter
(`delay = rng() * min(max_delay, base_delay * 2**retry)`), at most `attempts` tries and no
sleep that would end past `deadline` seconds after the first try. Every other error is
permanent and raised at once. `sleep`, `rng` and `clock` are injectable so tests never
wait. The deadline bounds the retrying, not one slow attempt (backends time out on their
own).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio

from dropbeard.core.errors import NotFound, PreconditionFailed, Unavailable
from dropbeard.store.base import ListPage, Progress, Store
from dropbeard.store.forwarding import ForwardingStore, Streaming, close_listing

T = TypeVar("T")


class _Backoff:
    """The retry budget of one request: counts failures and sleeps between attempts."""

    def __init__(self, store: RetryingStore) -> None:
        self._store = store
        self._started = store._clock()
        self.failures = 0

    async def failed(self, err: Unavailable) -> None:
        """Sleep before the next attempt, or raise Unavailable if the budget is spent."""
        store = self._store
        self.failures += 1
        elapsed = store._clock() - self._started
        delay = store._rng() * min(store._max_delay, store._base_delay * 2 ** (self.failures - 1))
        if self.failures >= store._attempts:
            why = ""
        elif elapsed + delay > store._deadline:
            why = f", {elapsed:.1f}s of a {store._deadline:g}s deadline"
        else:
            await store._sleep(delay)
            return
        raise Unavailable(f"{err.message} (gave up after {self.failures} attempts{why})", err.key)


class _ProgressOnce:
    """Reports each byte once across attempts, though a retried transfer restarts at 0."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._reported = 0
        self._current = 0

    def restart(self) -> None:
        self._current = 0

    def __call__(self, n: int) -> None:
        self._current += n
        if self._progress is not None and self._current > self._reported:
            self._progress(self._current - self._reported)
            self._reported = self._current


class RetryingStore(ForwardingStore):
    """Wraps any `Store`; see the module docstring for the policy.

    Conditional writes survive a lost reply: if an attempt wrote the object but its reply
    never arrived, the retry finds the key taken (`put_if_absent`) or its etag moved on
    (`put_if_match`) and gets PreconditionFailed. After a retry, that answer is checked:
    when the stored bytes equal ours, the write is reported as a success with the stored
    etag. (A different writer that stored the very same bytes is indistinguishable, and
    equally fine: the key holds what the caller wanted.)
    """

    def __init__(
        self,
        inner: Store,
        *,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        deadline: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        super().__init__(inner)
        self._attempts = attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._deadline = deadline
        self._sleep = sleep
        self._rng = rng
        self._clock = clock

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry `call` while it fails with Unavailable and the budget lasts (conditional
        writes and listings have loops of their own)."""
        backoff = _Backoff(self)
        while True:
            try:
                return await call()
            except Unavailable as err:
                await backoff.failed(err)

    async def _transfer(
        self, op: str, key: str, progress: Progress | None, call: Streaming[T]
    ) -> T:
        """Each attempt restarts its transfer: progress is reported once per byte."""
        once = _ProgressOnce(progress)

        async def attempt() -> T:
            once.restart()
            return await call(once)

        return await self._forward(op, key, attempt)

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        return await self._write_conditionally(
            "put_if_absent",
            key,
            data,
            lambda: self.inner.put_if_absent(key, data, sha256=sha256),
        )

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        return await self._write_conditionally(
            "put_if_match", key, data, lambda: self.inner.put_if_match(key, data, etag)
        )

    async def _write_conditionally(
        self, op: str, key: str, data: bytes, write: Callable[[], Awaitable[str]]
    ) -> str:
        """Retried like any request; a PreconditionFailed after a retry is a success if
        the key holds `data` (see the class docstring)."""
        attempts = 0

        async def attempt() -> str:
            nonlocal attempts
            attempts += 1
            return await write()

        try:
            return await self._forward(op, key, attempt)
        except PreconditionFailed:
            if attempts == 1:
                raise  # first attempt: nothing of ours can be there
            etag = await self._etag_if_holds(key, data)
            if etag is None:
                raise
            return etag

    async def _etag_if_holds(self, key: str, data: bytes) -> str | None:
        """The etag of `key` if it holds exactly `data`, else None."""
        try:
            found = await self.get_if_changed(key, None)
        except NotFound:
            return None
        if found is None or found[0] != data:
            return None
        return found[1]

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        """A failed page fetch resumes the listing after the last key or prefix yielded;
        entries at or before it are dropped, so nothing is yielded twice or skipped."""
        after = start_after
        last: bytes | None = None
        backoff = _Backoff(self)
        while True:
            pages = aiter(self.inner.list(prefix, start_after=after, delimiter=delimiter))
            try:
                while True:
                    try:
                        page = await anext(pages)
                    except StopAsyncIteration:
                        return
                    except Unavailable as err:
                        await backoff.failed(err)
                        break
                    backoff = _Backoff(self)  # each page gets the whole budget
                    page = _entries_after(page, last)
                    names = [o.key for o in page.objects] + page.prefixes
                    if names:
                        after = max(names, key=str.encode)
                        last = after.encode()
                        yield page
            finally:
                await close_listing(pages)


def _entries_after(page: ListPage, last: bytes | None) -> ListPage:
    if last is None:
        return page
    return ListPage(
        objects=[o for o in page.objects if o.key.encode() > last],
        prefixes=[p for p in page.prefixes if p.encode() > last],
    )
