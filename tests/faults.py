"""FaultStore: wraps a real store and injects faults programmed by a test (test support, IO
only through `inner`).

    faults = FaultStore(LocalStore(root))
    faults.fail("get", times=2)                      # next 2 gets raise Unavailable
    faults.fail("put", Unauthorized, prefix="blobs/")
    faults.fail("list_page", skip=1)                 # the 2nd page fetch of a listing fails
    faults.lose_reply("put_if_absent")               # write happens, then Unavailable
    faults.add_latency(0.05, "get")

Operation names are `CountingStore`'s: get, get_if_changed, get_file, head, put, put_file,
put_if_absent, put_if_match, list_page, delete. A rule matches a call when the operation
is the same and the key (or the listing prefix) starts with `prefix`; it lets `skip`
matching calls through, then fires on the next `times`. Every rule counts every call it
matches; when two would fire on the same call, the one programmed first does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import anyio

from dropbeard.core.errors import StoreError, Unavailable
from dropbeard.store.base import ListPage, ObjectInfo, Progress, Store, UploadJournal

T = TypeVar("T")
WRITES = frozenset({"put", "put_file", "put_if_absent", "put_if_match", "delete"})


@dataclass
class _Rule:
    op: str
    prefix: str
    skip: int
    times: int
    action: Literal["raise", "lose_reply"]
    error: type[StoreError]
    seen: int = 0

    @property
    def remaining(self) -> int:
        return max(0, min(self.times, self.skip + self.times - self.seen))


class FaultStore:
    """`calls[op]` counts every call seen (faulty or not); `fired[op]` the faults injected."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.description = inner.description
        self.calls: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()
        self._rules: list[_Rule] = []
        self._latency: dict[str | None, float] = {}

    # -- programming ------------------------------------------------------------------

    def fail(
        self,
        op: str,
        error: type[StoreError] = Unavailable,
        *,
        times: int = 1,
        skip: int = 0,
        prefix: str = "",
    ) -> None:
        """Raise `error` instead of performing the next `times` matching calls."""
        self._rules.append(_Rule(op, prefix, skip, times, "raise", error))

    def lose_reply(self, op: str, *, times: int = 1, skip: int = 0, prefix: str = "") -> None:
        """Perform the next `times` matching writes for real, then raise Unavailable as if
        the reply had been lost on the way back."""
        if op not in WRITES:
            raise ValueError(f"only writes can lose their reply, not {op!r}")
        self._rules.append(_Rule(op, prefix, skip, times, "lose_reply", Unavailable))

    def add_latency(self, seconds: float, op: str | None = None) -> None:
        """Delay every call of `op` (of every operation if None) by `seconds`."""
        self._latency[op] = seconds

    def clear(self) -> None:
        self._rules.clear()
        self._latency.clear()

    @property
    def pending(self) -> int:
        """Faults programmed but not injected yet."""
        return sum(rule.remaining for rule in self._rules)

    # -- injection --------------------------------------------------------------------

    def _rule_for(self, op: str, key: str) -> _Rule | None:
        firing = None
        for rule in self._rules:
            if rule.op == op and key.startswith(rule.prefix):
                rule.seen += 1
                if firing is None and rule.skip < rule.seen <= rule.skip + rule.times:
                    firing = rule
        return firing

    async def _call(self, op: str, key: str, perform: Callable[[], Awaitable[T]]) -> T:
        self.calls[op] += 1
        delay = self._latency.get(op, self._latency.get(None, 0.0))
        if delay:
            await anyio.sleep(delay)
        rule = self._rule_for(op, key)
        if rule is None:
            return await perform()
        self.fired[op] += 1
        if rule.action == "lose_reply":
            await perform()
            raise Unavailable(f"injected fault: reply to {op} {key} lost", key)
        raise rule.error(f"injected fault: {op} {key} failed", key)

    # -- the Store protocol -----------------------------------------------------------

    async def get(self, key: str) -> bytes:
        return await self._call("get", key, lambda: self.inner.get(key))

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        return await self._call("get_if_changed", key, lambda: self.inner.get_if_changed(key, etag))

    async def get_file(
        self,
        key: str,
        dest: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        return await self._call(
            "get_file",
            key,
            lambda: self.inner.get_file(
                key, dest, expected_sha256=expected_sha256, progress=progress
            ),
        )

    async def head(self, key: str) -> ObjectInfo:
        return await self._call("head", key, lambda: self.inner.head(key))

    async def put(self, key: str, data: bytes) -> str:
        return await self._call("put", key, lambda: self.inner.put(key, data))

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        journal: UploadJournal | None = None,
        progress: Progress | None = None,
    ) -> str:
        return await self._call(
            "put_file",
            key,
            lambda: self.inner.put_file(
                key, path, expected_sha256=expected_sha256, journal=journal, progress=progress
            ),
        )

    async def put_if_absent(self, key: str, data: bytes) -> str:
        return await self._call("put_if_absent", key, lambda: self.inner.put_if_absent(key, data))

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        return await self._call(
            "put_if_match", key, lambda: self.inner.put_if_match(key, data, etag)
        )

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        pages = aiter(self.inner.list(prefix, start_after=start_after, delimiter=delimiter))
        try:
            while True:
                try:
                    page = await self._call("list_page", prefix, lambda: anext(pages))
                except StopAsyncIteration:
                    return
                yield page
        finally:
            close = getattr(pages, "aclose", None)
            if close is not None:
                await close()

    async def delete(self, key: str) -> None:
        await self._call("delete", key, lambda: self.inner.delete(key))

    async def aclose(self) -> None:
        await self.inner.aclose()
