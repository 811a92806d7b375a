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

Large transfers never take it all: a quarter of the request slots and of the memory is
kept from them (when the budget has at least four slots and 4 MiB), so small files keep
moving while large ones stream. Large transfers are bound by bytes per second and small
ones by round trips and per-request work; one at a time they leave half the path idle.
Without the reserve, sixteen 4 MiB chunks took every slot and every byte of memory and
the small files of a mixed tree waited for the last chunk, then went up alone.
"""

from __future__ import annotations

from collections import deque

import anyio

from dropbeard.store.base import SMALL_REQUESTS_PER_SLOT

#: Bytes of file content held in memory by the transfers of one pass, at most.
DEFAULT_MEMORY = 64 * 1024 * 1024
#: A request that moves at most this many bytes is small (see above); memory taken for
#: more than this is a large transfer's.
SMALL_REQUEST = 1024 * 1024
#: The share of slots and memory large transfers cannot take (see above): 1/RESERVE.
RESERVE = 4


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
        # What large transfers may hold together; taken before the shared pool's.
        kept_slots = requests // RESERVE * SMALL_REQUESTS_PER_SLOT
        self._large_slots = _Weighted(self.small_requests - kept_slots) if kept_slots else None
        big_enough = memory >= RESERVE * SMALL_REQUEST
        self._large_bytes = _Weighted(memory - memory // RESERVE) if big_enough else None

    def request(self, count: int = 1, *, nbytes: int | None = None) -> _Held:
        """Hold `count` request slots (capped at the budget; all at once, never some of
        them while waiting for the rest) for an `async with` block; a share of one if the
        request moves at most SMALL_REQUEST bytes (`nbytes`, when the caller knows it).
        Memory, when a transfer needs both, is taken first: never wait for memory while
        holding a request slot."""
        small = nbytes is not None and nbytes <= SMALL_REQUEST
        shares = 1 if small else SMALL_REQUESTS_PER_SLOT
        large = None if small else self._large_slots
        shares = min(max(count, 1) * shares, (large or self._slots).total)
        return _Held(large, self._slots, shares)

    def holding(self, nbytes: int) -> _Memory:
        """Hold `nbytes` of memory (capped at the budget, so any size gets its turn) for
        an `async with` block. Waiters are served in order: a large file is not starved by
        small ones."""
        return _Memory(self, nbytes)

    async def take_memory(self, nbytes: int) -> int:
        """Take `nbytes` of memory (capped as by `holding`), waiting in order; returns what
        was taken, for `give_memory` once those bytes are written."""
        large = self._large_pool(nbytes)
        nbytes = min(max(nbytes, 0), (large or self._bytes).total)
        await _take(large, self._bytes, nbytes)
        return nbytes

    def try_take_memory(self, nbytes: int) -> int | None:
        """`take_memory` if it need not wait (and nobody waits before it), else None."""
        large = self._large_pool(nbytes)
        nbytes = min(max(nbytes, 0), (large or self._bytes).total)
        if large is not None and not large.try_acquire(nbytes):
            return None
        if self._bytes.try_acquire(nbytes):
            return nbytes
        if large is not None:
            large.release(nbytes)
        return None

    def give_memory(self, nbytes: int) -> None:
        """Give back what `take_memory` or `try_take_memory` returned."""
        _give(self._large_pool(nbytes), self._bytes, nbytes)

    def _large_pool(self, nbytes: int) -> _Weighted | None:
        """The pool a large transfer's memory also comes from (None for a small one, or
        when the budget keeps no reserve). What a large take is capped at stays large."""
        return self._large_bytes if nbytes > SMALL_REQUEST else None


class _Held:
    """`n` of `first` (if any) and of `then`, taken in that order for an `async with`
    block. A class rather than a generator-based context manager: it is entered once per
    request, thousands of times a second."""

    __slots__ = ("_first", "_n", "_then")

    def __init__(self, first: _Weighted | None, then: _Weighted, n: int) -> None:
        self._first, self._then, self._n = first, then, n

    async def __aenter__(self) -> None:
        await _take(self._first, self._then, self._n)

    async def __aexit__(self, *exc_info: object) -> None:
        _give(self._first, self._then, self._n)


async def _take(first: _Weighted | None, then: _Weighted, n: int) -> None:
    """Take `n` of `first` (if any), then of `then`: both, or (failed or cancelled while
    waiting) neither."""
    if first is not None:
        await first.acquire(n)
    try:
        await then.acquire(n)
    except BaseException:
        if first is not None:
            first.release(n)
        raise


def _give(first: _Weighted | None, then: _Weighted, n: int) -> None:
    """Give back what `_take` took."""
    then.release(n)
    if first is not None:
        first.release(n)


class _Memory:
    """Memory of a `TransferBudget` held for an `async with` block (`holding`)."""

    __slots__ = ("_budget", "_nbytes", "_taken")

    def __init__(self, budget: TransferBudget, nbytes: int) -> None:
        self._budget, self._nbytes, self._taken = budget, nbytes, 0

    async def __aenter__(self) -> None:
        self._taken = await self._budget.take_memory(self._nbytes)

    async def __aexit__(self, *exc_info: object) -> None:
        self._budget.give_memory(self._taken)


class _Weighted:
    """A weighted semaphore served first come, first served."""

    def __init__(self, total: int) -> None:
        self.total = total
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
