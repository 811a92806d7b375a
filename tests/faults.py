"""FaultStore: wraps a real store and injects faults programmed by a test; WriteLog: records
every write that reached a store (test support, IO only through `inner`).

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

import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import anyio

from dropbeard.core.errors import StoreError, Unavailable
from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore

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


class FaultStore(ForwardingStore):
    """`calls[op]` counts every call seen (faulty or not); `fired[op]` the faults injected."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
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

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls[op] += 1
        delay = self._latency.get(op, self._latency.get(None, 0.0))
        if delay:
            await anyio.sleep(delay)
        rule = self._rule_for(op, key)
        if rule is None:
            return await call()
        self.fired[op] += 1
        if rule.action == "lose_reply":
            await call()
            raise Unavailable(f"injected fault: reply to {op} {key} lost", key)
        raise rule.error(f"injected fault: {op} {key} failed", key)


@dataclass(frozen=True)
class Written:
    """One write that succeeded: its operation, key, and the SHA-256 of the bytes written
    (None for a delete); `data` kept for small objects (under 64 KiB) only."""

    op: str
    key: str
    sha256: str | None
    data: bytes | None = field(default=None, repr=False)


class WriteLog(ForwardingStore):
    """Appends every write that succeeded on `inner` to `log` (shared by every store a
    test opens): put, put_if_absent, put_if_match and delete. Wrap it inside a FaultStore
    so that a write whose reply is lost is logged too (it happened)."""

    def __init__(self, inner: Store, log: list[Written]) -> None:
        super().__init__(inner)
        self.log = log

    def _record(self, op: str, key: str, data: bytes | None) -> None:
        sha = None if data is None else hashlib.sha256(data).hexdigest()
        kept = data if data is not None and len(data) < 65536 else None
        self.log.append(Written(op, key, sha, kept))

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        etag = await super().put(key, data, sha256=sha256)
        self._record("put", key, data)
        return etag

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        etag = await super().put_if_absent(key, data, sha256=sha256)
        self._record("put_if_absent", key, data)
        return etag

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        new = await super().put_if_match(key, data, etag)
        self._record("put_if_match", key, data)
        return new

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self._record("delete", key, None)
