"""SilenceWatch: a `Store` wrapper that knows how long the server has kept silent, so a
person can be told that it does not answer while the requests are still being retried
(IO only through `inner`).

Silent means: at least one request is waiting, and no request ended and no byte of a
transfer moved for that long. Wrapped around `RetryingStore`, a request retried after
timeouts is one long wait.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dropbeard.store.base import Progress, Store
from dropbeard.store.forwarding import ForwardingStore, Streaming

T = TypeVar("T")


class SilenceWatch(ForwardingStore):
    """`silent_for()` is how long the server has been silent (0 while nothing waits)."""

    def __init__(self, inner: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self._clock = clock
        self._waiting = 0
        self._heard = clock()

    def silent_for(self) -> float:
        return 0.0 if self._waiting == 0 else max(0.0, self._clock() - self._heard)

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if self._waiting == 0:
            self._heard = self._clock()  # silence starts with the first request waiting
        self._waiting += 1
        try:
            return await call()
        finally:
            self._waiting -= 1
            self._heard = self._clock()

    async def _transfer(
        self, op: str, key: str, progress: Progress | None, call: Streaming[T]
    ) -> T:
        def moved(n: int) -> None:
            self._heard = self._clock()
            if progress is not None:
                progress(n)

        return await self._forward(op, key, lambda: call(moved))
