"""A store whose every call takes a link's round trip, recording when each started and
ended (for tests of what runs at once)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore

T = TypeVar("T")
#: a store call: (op, key, start, end)
Call = tuple[str, str, float, float]


class Timed(ForwardingStore):
    """Every call of the store it wraps held `latency` seconds, with when it started and
    ended (appended to `calls`)."""

    def __init__(self, inner: Store, calls: list[Call], latency: float = 0.05) -> None:
        super().__init__(inner)
        self.calls = calls
        self.latency = latency

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        start = time.monotonic()
        await anyio.sleep(self.latency)
        try:
            return await call()
        finally:
            self.calls.append((op, key, start, time.monotonic()))
