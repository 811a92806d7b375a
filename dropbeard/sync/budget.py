"""One budget of requests and bytes in flight, shared by every transfer of a pass (IO-free;
anyio only).

A transfer holds a *request* slot only while its request is on the network, and holds
*memory* for the bytes it keeps in RAM from before it reads them until it has written
them (to the store, or to disk). Requests bound the load on the server; memory bounds
RAM whatever the file sizes. So many small files run as many requests as the budget
allows, while large files are held back by their bytes (a 16 MiB body takes a quarter of
the default 64 MiB), and large and small transfers share the same slots instead of each
kind having fixed ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

#: Bytes of file content held in memory by the transfers of one pass, at most.
DEFAULT_MEMORY = 64 * 1024 * 1024


class TransferBudget:
    """`requests` requests in flight and `memory` bytes held, at most."""

    def __init__(self, requests: int, memory: int = DEFAULT_MEMORY) -> None:
        if requests < 1 or memory < 1:
            raise ValueError("a transfer budget needs at least one request and one byte")
        self.requests = requests
        self.memory = memory
        self._slots = _Weighted(requests)
        self._bytes = _Weighted(memory)

    @asynccontextmanager
    async def request(self, count: int = 1) -> AsyncIterator[None]:
        """Hold `count` request slots (capped at the budget; all at once, never some of
        them while waiting for the rest) for the block. Memory, when a transfer needs
        both, is taken first: never wait for memory while holding a request slot."""
        count = min(max(count, 1), self.requests)
        await self._slots.acquire(count)
        try:
            yield
        finally:
            self._slots.release(count)

    @asynccontextmanager
    async def holding(self, nbytes: int) -> AsyncIterator[None]:
        """Hold `nbytes` of memory (capped at the budget, so any size gets its turn) for
        the block. Waiters are served in order: a large file is not starved by small ones."""
        taken = await self.take_memory(nbytes)
        try:
            yield
        finally:
            self.give_memory(taken)

    async def take_memory(self, nbytes: int) -> int:
        """Take `nbytes` of memory (capped as by `holding`), waiting in order; returns what
        was taken, for `give_memory` once those bytes are written."""
        nbytes = min(max(nbytes, 0), self.memory)
        await self._bytes.acquire(nbytes)
        return nbytes

    def try_take_memory(self, nbytes: int) -> int | None:
        """`take_memory` if it need not wait (and nobody waits before it), else None."""
        nbytes = min(max(nbytes, 0), self.memory)
        return nbytes if self._bytes.try_acquire(nbytes) else None

    def give_memory(self, nbytes: int) -> None:
        """Give back what `take_memory` or `try_take_memory` returned."""
        self._bytes.release(nbytes)


class _Weighted:
    """A weighted semaphore served first come, first served."""

    def __init__(self, total: int) -> None:
        self._free = total
        self._waiting: deque[tuple[int, anyio.Event]] = deque()

    def try_acquire(self, n: int) -> bool:
        if not self._waiting and n <= self._free:
            self._free -= n
            return True
        return False

    async def acquire(self, n: int) -> None:
        if self.try_acquire(n):
            return
        entry = (n, anyio.Event())
        self._waiting.append(entry)
        try:
            await entry[1].wait()
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
                self._wake()  # those behind it may fit now
            else:
                self.release(n)  # granted, but cancelled before it could be used
            raise

    def release(self, n: int) -> None:
        self._free += n
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self._free:
            n, event = self._waiting.popleft()
            self._free -= n
            event.set()
