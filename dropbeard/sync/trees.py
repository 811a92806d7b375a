"""Reading and writing the tree nodes of one root (IO: store, `.dropbear/trees/`).

`TreeStore.node` returns a verified node: from a small in-memory cache of decoded nodes,
from the node cache on disk, or from the bucket (checked against its key before anything
else, then cached). `TreeStore.write` uploads nodes create-only and concurrently,
skipping those known to be in the bucket; a node another device already wrote is
success. The walks, diffs and updates over whole trees are in `sync.treeread` and
`sync.treewrite`.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import partial

import anyio
import msgspec

from dropbeard.core.errors import NotFound, PreconditionFailed
from dropbeard.core.keys import RootKeys
from dropbeard.core.tree import Node, decode_node
from dropbeard.store.base import Store
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trips import ThreadTrips
from dropbeard.sync.workers import first_error, for_each

#: Nodes larger than this are hashed and decoded in a worker thread (dropbeard writes
#: nodes of a few tens of KiB; only a hostile bucket holds larger ones).
THREAD_DECODE_BYTES = 256 * 1024
#: Decoded nodes kept in memory, in bytes of memory (a walk reads each node once; this
#: lets a prefetch get ahead of it, and an update find its lookups again).
MEMORY_BUDGET = 16 * 1024 * 1024
#: A decoded node takes about this many times its JSON in memory (measured: 40 pages of
#: 256 file entries, 761 KB of JSON, 2.31 MB decoded). Counted in JSON bytes, the budget
#: held three times itself: ~48 MiB of a first sync's stale pages of its root.
DECODED_PER_BYTE = 3
#: A node seen in the bucket less than this long ago is not uploaded again: half the
#: default grace period (SPEC 8.2), for which gc spares anything a retained tree reaches.
PRESENT_FOR = 12 * 3600.0


class TreeStats(msgspec.Struct):
    """What a TreeStore did, for tests and benchmarks."""

    fetched: int = 0  # nodes read from the bucket
    fetched_bytes: int = 0
    cache_hits: int = 0  # nodes read from the disk cache
    memory_hits: int = 0
    written: int = 0  # nodes uploaded
    written_bytes: int = 0
    largest_written: int = 0
    skipped: int = 0  # nodes not uploaded: known to be in the bucket
    existed: int = 0  # uploads that found the node there already (refreshed)


class _Loading:
    """A node being loaded by one task, awaited by any other that asks for it."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.node: Node | None = None
        self.error: BaseException | None = None


class TreeStore:
    """The tree nodes of one root in `store`, through `cache` (None: no disk cache).
    At most `reads` reads at a time (default: `concurrency`); writes as many as `budget`
    lets in flight (without one, `concurrency` too), a build from `concurrency` writers.
    With `write_behind`, nodes go to the disk cache in the background (its owner calls
    `settle`). Safe for concurrent use by many tasks."""

    def __init__(
        self,
        store: Store,
        keys: RootKeys,
        cache: NodeCache | None = None,
        *,
        concurrency: int = 16,
        reads: int | None = None,
        budget: TransferBudget | None = None,
        memory_budget: int = MEMORY_BUDGET,
        present_for: float = PRESENT_FOR,
        clock: Callable[[], float] = time.time,
        write_behind: bool = False,
    ) -> None:
        self.store = store
        self.keys = keys
        self.cache = cache
        self.concurrency = concurrency
        self.reads = reads or concurrency
        self.stats = TreeStats()
        self._limiter = anyio.CapacityLimiter(self.reads)
        self._budget = budget
        self._memory: OrderedDict[str, tuple[Node, int]] = OrderedDict()
        self._memory_bytes = 0
        self._memory_budget = memory_budget
        self.present_for = present_for
        self._clock = clock
        self._loading: dict[str, _Loading] = {}
        #: nodes written to or read from the bucket, when no disk cache records that
        self._seen: set[str] = set()
        #: the disk cache's reads and writes: those of concurrent loads share thread trips
        self._trips = ThreadTrips()
        #: disk cache writes left to the cache's background writer (`settle` waits)
        self._write_behind = write_behind

    def key(self, digest: str) -> str:
        """The bucket key of node `digest`, as messages name it."""
        return self.keys.tree(digest)

    # --- reading -----------------------------------------------------------------------

    async def node(self, digest: str) -> Node:
        """Node `digest`, verified. NotFound if the bucket does not hold it; IntegrityError
        or FormatError (naming its key) if what it holds is not that node."""
        cached = self._memory.get(digest)
        if cached is not None:
            self._memory.move_to_end(digest)
            self.stats.memory_hits += 1
            return cached[0]
        loading = self._loading.get(digest)
        if loading is not None:
            await loading.done.wait()
            if loading.error is not None:
                raise loading.error
            assert loading.node is not None
            return loading.node
        loading = self._loading[digest] = _Loading()
        try:
            loading.node = await self._load(digest)
            return loading.node
        except BaseException as exc:
            loading.error = exc
            raise
        finally:
            del self._loading[digest]
            loading.done.set()

    def peek(self, digest: str) -> Node | None:
        """Node `digest` if it is in memory now (no IO)."""
        cached = self._memory.get(digest)
        return None if cached is None else cached[0]

    async def prefetch(self, digests: Iterable[str]) -> None:
        """Load these nodes concurrently into memory, ahead of a walk that needs them."""
        wanted = list(dict.fromkeys(d for d in digests if d not in self._memory))
        if len(wanted) > 1:
            with first_error():
                await for_each(wanted, self._prefetch_one, min(len(wanted), self.reads))

    async def _prefetch_one(self, digest: str) -> None:
        await self.node(digest)

    async def _load(self, digest: str) -> Node:
        key = self.keys.tree(digest)
        data = None
        if self.cache is not None:
            data = await self._trips.run(partial(self.cache.read, digest))
        from_bucket = data is None
        if data is not None:
            self.stats.cache_hits += 1
        else:
            async with self._limiter:
                try:
                    data = await self.store.get(key)
                except NotFound:
                    raise NotFound(f"reading tree {key}: it is missing", key) from None
            self.stats.fetched += 1
            self.stats.fetched_bytes += len(data)
            if self.cache is None:
                self._seen.add(digest)
        if len(data) > THREAD_DECODE_BYTES:
            node = await anyio.to_thread.run_sync(decode_node, data, digest, key)
        else:
            node = decode_node(data, digest, key)
        if self.cache is not None and from_bucket:
            await self._keep(digest, data)
        self._remember(digest, node, len(data) * DECODED_PER_BYTE)
        return node

    async def _keep(self, digest: str, data: bytes) -> None:
        """Put node `digest` in the disk cache: written behind if this store does that,
        else (or when the cache's backlog is full) now."""
        assert self.cache is not None
        if not (self._write_behind and self.cache.write_later(digest, data)):
            await self._trips.run(partial(self.cache.write, digest, data))

    async def settle(self) -> None:
        """Wait until the nodes this store wrote behind are in the disk cache."""
        if self.cache is not None and self._write_behind:
            await anyio.to_thread.run_sync(self.cache.settle)

    def _remember(self, digest: str, node: Node, size: int) -> None:
        if size > self._memory_budget:
            return
        self._memory[digest] = (node, size)
        self._memory_bytes += size
        while self._memory_bytes > self._memory_budget:
            _, (_, dropped) = self._memory.popitem(last=False)
            self._memory_bytes -= dropped

    # --- writing -----------------------------------------------------------------------

    def known_present(self, digest: str) -> bool:
        """True if node `digest` was seen in the bucket recently enough not to upload it
        again: written by this TreeStore, or written or read within `present_for`."""
        if digest in self._seen:
            return True
        if self.cache is None:
            return False
        seen = self.cache.seen_at(digest)
        return seen is not None and self._clock() - seen < self.present_for

    def absent(self, nodes: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
        """Those of `nodes` (digest, canonical bytes) not known present, once each (the
        others counted as skipped). It may look in the disk cache, a `stat` per node:
        call it in a worker thread for more than a few."""
        todo: dict[str, bytes] = {}
        for digest, data in nodes:
            if digest in todo:
                continue
            if self.known_present(digest):
                self.stats.skipped += 1
            else:
                todo[digest] = data
        return todo

    async def write(self, nodes: Iterable[tuple[str, bytes]], *, absent: bool = False) -> None:
        """Make sure every node (digest, canonical bytes) is in the bucket; `absent`:
        `nodes` came from `absent`, not to be looked for again."""
        if absent:
            todo = dict(nodes)
        else:
            todo = await anyio.to_thread.run_sync(self.absent, list(nodes))
        if len(todo) == 1:
            await self._put(next(iter(todo.items())))
        elif todo:
            limit = self.concurrency if self._budget is None else self._budget.small_requests
            with first_error():
                await for_each(todo.items(), self._put, min(len(todo), limit))

    def _slot(self, size: int) -> contextlib.AbstractAsyncContextManager[object]:
        """A request slot for writing a node of `size` bytes."""
        if self._budget is None:
            return self._limiter
        return self._budget.request(nbytes=size)

    async def _put(self, item: tuple[str, bytes]) -> None:
        digest, data = item
        key = self.keys.tree(digest)
        async with self._slot(len(data)):
            try:
                await self.store.put_if_absent(key, data, sha256=digest)
            except PreconditionFailed:
                # Another device wrote the same listing. Write it again: same bytes, and a
                # new LastModified so gc spares it (SPEC 8.2); it also replaces the
                # truncated leftover a write cut short may leave on some servers.
                self.stats.existed += 1
                await self.store.put(key, data, sha256=digest)
        self.stats.written += 1
        self.stats.written_bytes += len(data)
        self.stats.largest_written = max(self.stats.largest_written, len(data))
        if self.cache is not None:
            await self._keep(digest, data)
        else:
            self._seen.add(digest)
