"""One budget of requests and bytes in flight, shared by every transfer of a pass (IO-free;
anyio only).

A transfer holds a *request* slot only while its request is on the network, and holds
*memory* for the bytes it keeps in RAM from before it reads them until it has written
them (to the store, or to disk). Requests bound the load on the server; memory bounds
RAM whatever the file sizes. So many small files run as many requests as the budget
allows, while large files are held back by their bytes (a 16 MiB body takes a quarter of
the default 64 MiB), and large and small transfers share the same slots instead of each
kind having fixed ones.

Requests are sized to their work: one that moves at most SMALL_REQUEST bytes (a small
GET or PUT, a HEAD) waits on round trips far more than on bandwidth, so it takes
1/SMALL_REQUESTS_PER_SLOT of a slot. A pass of small files keeps four times as many
requests in flight as one of large files (64 and 16 by default; over a 30 ms link that
is what makes small files cost their round trips in parallel rather than in turn).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from dropbeard.store.base import SMALL_REQUESTS_PER_SLOT

#: Bytes of file content held in memory by the transfers of one pass, at most.
DEFAULT_MEMORY = 64 * 1024 * 1024
#: A request that moves at most this many bytes is small (see above).
SMALL_REQUEST = 1024 * 1024


class TransferBudget:
    """`requests` large requests in flight (or SMALL_REQUESTS_PER_SLOT times as many
    small ones: `small_requests`) and `memory` bytes held, at most."""

    def __init__(self, requests: int, memory: int = DEFAULT_MEMORY) -> None:
        if requests < 1 or memory < 1:
            raise ValueError("a transfer budget needs at least one request and one byte")
        self.requests = requests
        self.small_requests = requests * SMALL_REQUESTS_PER_SLOT
        self.memory = memory
        self._slots = _Weighted(self.small_requests)  # in small requests' shares
        self._bytes = _Weighted(memory)

    @asynccontextmanager
    async def request(self, count: int = 1, *, nbytes: int | None = None) -> AsyncIterator[None]:
        """Hold `count` request slots (capped at the budget; all at once, never some of
        them while waiting for the rest) for the block; a share of one if the request
        moves at most SMALL_REQUEST bytes (`nbytes`, when the caller knows it). Memory,
        when a transfer needs both, is taken first: never wait for memory while holding
        a request slot."""
        shares = 1 if nbytes is not None and nbytes <= SMALL_REQUEST else SMALL_REQUESTS_PER_SLOT
        shares = min(max(count, 1) * shares, self.small_requests)
        await self._slots.acquire(shares)
        try:
            yield
        finally:
            self._slots.release(shares)

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
