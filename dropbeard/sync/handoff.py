"""Items handed from producers to a pool of consumer tasks, one at a time, without a trip
through the event loop per item (IO-free; anyio only).

anyio's memory object streams yield to the event loop on every `send` and every
`receive`, even when the item is there: two loop iterations per item, which for ten
thousand small files read in batches and sent by dozens of tasks is a visible share of
the pass's CPU. Here an item put while a consumer waits goes straight to that consumer
(it alone is woken), and a consumer that finds an item waiting takes it at once.
Unbounded: the producer bounds what it puts (the upload's memory budget).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class _Waiter(Generic[T]):
    __slots__ = ("event", "handed", "item")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.item: T | None = None
        self.handed = False


class Handoff(Generic[T]):
    """`put` items, `close` once done; `get` returns the next item, or None once closed
    and empty. Items go to waiting consumers in the order they began to wait."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiting: deque[_Waiter[T]] = deque()
        self._closed = False

    def put(self, item: T) -> None:
        if self._closed:
            raise RuntimeError("put on a closed Handoff")
        if self._waiting:
            waiter = self._waiting.popleft()
            waiter.item, waiter.handed = item, True
            waiter.event.set()
        else:
            self._items.append(item)

    def close(self) -> None:
        """No more items: every waiting consumer gets None."""
        self._closed = True
        while self._waiting:
            self._waiting.popleft().event.set()

    async def get(self) -> T | None:
        if self._items:
            return self._items.popleft()
        if self._closed:
            return None
        waiter: _Waiter[T] = _Waiter()
        self._waiting.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.handed:  # handed over, but its consumer is gone: the next one's
                assert waiter.item is not None
                self._items.appendleft(waiter.item)
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise
        return waiter.item
