"""A first sync's files sent while the scan is still hashing (IO: store).

A first sync hashes every file before it reconciles, and reconciles before it uploads:
on a root of small files, the server has nothing to do for the whole scan. The scan's
hash threads read a file of up to LARGEST whole when `Ahead` has room for it
(`sync.hashing`); `Ahead` takes those bytes, with the digest they were proven to have,
and sends them as blobs while the walk goes on. The upload step then finds them sent
(`finish`) and reads and sends only the others. A file stored in chunks offers each
chunk as the scan cuts and hashes it (`Chunker.digest_fd`), from the bytes the cut read;
a file over LARGEST that is not is read through the hash threads' buffer and sent by the
upload step.

Only where sending early wastes nothing the upload step would spare: a first sync (this
device tracks nothing), of a root no other device has published a tree of as far as the
pass reads them (a mode that does not read them, or a device whose objects cannot be
trusted, leaves its blobs unknown to the upload step too), in a pass that publishes (not
a dry run). Bytes already sent are not sent again for another path. A blob is
content-addressed and no head names it until the tree listing it is published: sending
it before its path is reconciled is what an upload that is cut short already does (SPEC
8.2: gc spares it for the grace period; the upload step still decides what the tree
lists, and sends what is not known to be sent).

While it sends, a hash thread whose file (of WAITS_FROM bytes or more) finds `MEMORY`
bytes waiting already waits for room, so that a first sync reads and hashes such a file
once, and hashes no faster than the bucket takes its bytes: on two cores, hashing ahead
of the network took the CPU the server and the sending needed. A smaller file that
finds no room is left to the upload step, as is everything once a request failed or
the sending ended (the pass failed or was cancelled): then nothing waits (the upload
step meets the failure again and reports it). Requests share the pass's
`TransferBudget`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING

import anyio
import msgspec

from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.handoff import Handoff
from dropbeard.sync.meter import PassMeter
from dropbeard.sync.upload import SMALL, put_small

if TYPE_CHECKING:  # (sync.inputs builds on the scan, which offers to this module)
    from dropbeard.sync.inputs import Loaded, RemoteSide
    from dropbeard.sync.passrun import PassRun

#: Files up to this size are offered (read whole in one call by the hash threads): those
#: the upload step too would send with one PUT. (Up to 64 KiB-1 until the mixed 1 GiB
#: tree's first upload over a 30 ms link showed the network idle for most of the scan.)
LARGEST = SMALL
#: Bytes waiting to be sent, at most; a file offered beyond it is left to the upload step.
MEMORY = 32 * 1024 * 1024
#: An offer of this many bytes or more waits for room while `run` sends; a smaller one
#: that finds none is left to the upload step (which sends it beside the tree's draft,
#: and reading a small file again costs little beside its request).
WAITS_FROM = 64 * 1024


class Sent(msgspec.Struct):
    """What was sent ahead: each blob in the bucket now, True if its bytes went up (False:
    it was there, written recently enough)."""

    blobs: dict[str, bool] = msgspec.field(default_factory=dict)


class Ahead:
    """Blobs offered by the hash threads (`offer`), sent by `run` in the event loop until
    `finish`."""

    def __init__(
        self,
        store: Store,
        keys: RootKeys,
        budget: TransferBudget,
        fresh_since: float,
        meter: PassMeter | None = None,
    ) -> None:
        self.store = store
        self.meter = meter
        self.keys = keys
        self.budget = budget
        self.fresh_since = fresh_since
        self.sent = Sent()
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # bytes were sent, or nothing waits
        self._sending = False  # `run` is under way: an offer may wait for room
        self._needs: list[int] = []  # the sizes of the offers waiting for room
        self._offered: deque[tuple[str, str, bytes]] = deque()  # not yet in `_queue`
        self._wake_pending = False
        self._taken: set[str] = set()  # every digest accepted
        self._waiting_bytes = 0
        self._closed = False  # no more offers taken
        self._failed = False  # a request failed: nothing more is sent
        self._queue: Handoff[tuple[str, bytes]] = Handoff()
        self._done = anyio.Event()

    # --- the hash threads ----------------------------------------------------------------

    def room(self, size: int) -> bool:
        """Whether a file of `size` bytes would be taken (a hint, taken without the lock:
        `offer` decides): now, or once there is room while `run` sends. The hash threads
        read it whole only then."""
        if size > LARGEST or self._closed:
            return False
        return self._waits(size) or self._waiting_bytes + size <= MEMORY

    def _waits(self, size: int) -> bool:
        """Whether an offer of `size` bytes waits for room (see the module docstring)."""
        return self._sending and size >= WAITS_FROM

    def offer(self, path: str, sha256: str, data: bytes) -> None:
        """Send `data` (the bytes of `path`, whose SHA-256 is `sha256`, proven) ahead:
        when there is room, waiting for it while `run` sends; else not at all."""
        if len(data) > LARGEST:
            return
        with self._lock:
            while True:
                if self._closed or sha256 in self._taken:
                    return
                if self._waiting_bytes + len(data) <= MEMORY:
                    break
                if not self._waits(len(data)):
                    return
                self._needs.append(len(data))
                try:
                    self._room.wait()
                finally:
                    self._needs.remove(len(data))
            self._taken.add(sha256)
            self._waiting_bytes += len(data)
            self._offered.append((path, sha256, data))
            if self._wake_pending:
                return
            self._wake_pending = True
        self._loop.call_soon_threadsafe(self._move)

    def chunks_of(self, path: str) -> _Chunks:
        """A taker of the chunks of `path` as the scan cuts them (`Chunker.digest_fd`):
        each is offered as a blob of its own, as the upload step would send it."""
        return _Chunks(self, path)

    # --- the event loop -------------------------------------------------------------------

    def _move(self) -> None:
        with self._lock:
            self._wake_pending = False
            offered, self._offered = self._offered, deque()
        if self.meter is not None and offered:  # transfers shown by path
            self.meter.name_blobs((sha256, path, len(data)) for path, sha256, data in offered)
        for _, sha256, data in offered:
            self._queue.put((sha256, data))

    def _sent(self, nbytes: int) -> None:
        with self._lock:
            self._waiting_bytes -= nbytes
            # the hash threads waiting for room wake once one of them fits, not at every
            # blob sent (thousands a second of small ones: a thread switch each)
            if self._needs and self._waiting_bytes + min(self._needs) <= MEMORY:
                self._room.notify_all()

    async def run(self) -> None:
        """Send what is offered, until `finish` (or cancelled)."""
        with self._lock:
            self._sending = not self._closed
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.budget.small_requests):
                    tg.start_soon(self._send)
        finally:
            with self._lock:  # nothing waits for room any more
                self._sending = False
                self._room.notify_all()
            self._done.set()

    async def _send(self) -> None:
        while (item := await self._queue.get()) is not None:
            sha256, data = item
            try:
                if not self._failed:
                    async with self.budget.request(nbytes=len(data)):
                        went_up = await put_small(
                            self.store, self.keys.blob(sha256), data, sha256, self.fresh_since
                        )
                    self.sent.blobs[sha256] = went_up
            except Exception:  # the upload step sends it, and meets the error if it stays
                self._failed = True
                self._close()
            finally:
                self._sent(len(data))

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            self._room.notify_all()

    async def finish(self) -> Sent:
        """Take no more offers, wait until what was taken is sent (or given up), and say
        what is in the bucket. `run` then returns."""
        self._close()
        self._move()  # (a move scheduled before finds nothing left)
        self._queue.close()
        await self._done.wait()
        return self.sent


class _Chunks:
    """`Ahead` as the `ChunkTaker` of one file's chunks."""

    __slots__ = ("ahead", "path")

    def __init__(self, ahead: Ahead, path: str) -> None:
        self.ahead, self.path = ahead, path

    def room(self, size: int) -> bool:
        return self.ahead.room(size)

    def take(self, sha256: str, data: bytes) -> None:
        self.ahead.offer(self.path, sha256, data)


async def first_sync_ahead(run: PassRun, loaded: Loaded, remote: RemoteSide) -> Ahead | None:
    """An `Ahead` for the pass, if it is a first sync of a root no other device published
    a tree of (as far as `remote` read them): nothing of it can be in the bucket already."""
    devices = {} if remote.read is None else remote.read.devices
    if loaded.last_tree is not None or any(view.tree for view in devices.values()):
        return None
    if await anyio.to_thread.run_sync(run.state.tracks_anything):
        return None
    fresh_since = run.now.timestamp() - run.trees.present_for  # (half the grace period)
    return Ahead(run.store, run.keys, run.budget, fresh_since, run.opts.meter)
