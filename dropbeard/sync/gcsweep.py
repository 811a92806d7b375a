"""The delete phase of gc (SPEC 8.2): each unreached candidate's LastModified checked
again just before it goes, and every head read again before each batch, sparing what a
head that moved reaches (IO: store).

A candidate's LastModified is asked with a HEAD, or, when a shard of the key space
(`blobs/ab/`, 1/256 of it) holds more candidates than its listing has pages, by listing
that shard just before deleting them: a month of garbage costs a few hundred LIST pages,
not a request per object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from dropbeard.core.errors import DropbeardError, ExitCode, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.sweep import Listed, still_garbage
from dropbeard.store.base import Store
from dropbeard.sync.heads import Heads, device_ids, read_heads
from dropbeard.sync.reach import Marker
from dropbeard.sync.workers import for_each

CONCURRENCY = 16
#: Objects per listing page (S3's maximum, and the local store's).
PAGE = 1000


class GcStopped(DropbeardError):
    """gc found something it cannot read where it must know what is reached."""

    exit_code = ExitCode.INTEGRITY


def stop_if(problems: Iterable[str], doing: str) -> None:
    """Stop gc, deleting nothing more, if anything it depends on could not be read."""
    lines = list(problems)
    if lines:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise GcStopped(
            f"gc stopped while {doing}, deleting nothing more: {lines[0]}{more}; run "
            "`dropbeard verify` (the device that owns a missing object repairs it)"
        )


class Candidate(msgspec.Struct, frozen=True):
    """An object to delete unless `reached` (the marker's set for its kind) names it by
    then; `done` is where it is recorded once deleted."""

    obj: Listed
    reached: set[str]
    done: list[Listed]

    @property
    def digest(self) -> str:
        return self.obj.key[-64:]  # node and blob keys end in their digest


class Sweeper:
    def __init__(
        self,
        store: Store,
        keys: RootKeys,
        marker: Marker,
        heads: Heads,
        now: Callable[[], datetime],
        grace: timedelta,
    ) -> None:
        self.store, self.keys, self.marker, self.heads = store, keys, marker, heads
        self.now, self.grace = now, grace
        self.spared = 0  # refreshed, or reached by a head that moved, since the mark

    def shard(self, key: str) -> str:
        return key[: len(self.keys.blobs_prefix) + 3]  # `…/blobs/ab/` (`trees/` alike)

    async def delete(
        self, candidates: list[Candidate], listed: Iterable[Listed], recheck_every: int
    ) -> None:
        """Delete the candidates, shard by shard, re-reading the heads before each batch
        of about `recheck_every`; `listed` is every object listed (shard sizes)."""
        sizes = Counter(self.shard(o.key) for o in listed)
        groups: dict[str, list[Candidate]] = {}
        for c in candidates:
            groups.setdefault(self.shard(c.obj.key), []).append(c)
        batch: list[tuple[str, list[Candidate]]] = []
        count = 0
        for shard, group in [*groups.items(), ("", [])]:
            if batch and (count + len(group) > recheck_every or not group):
                await self._remark_moved_heads()
                await for_each(batch, lambda g: self._group(g[0], g[1], sizes[g[0]]), CONCURRENCY)
                batch, count = [], 0
            if group:
                batch.append((shard, group))
                count += len(group)

    async def _group(self, shard: str, group: list[Candidate], size: int) -> None:
        pending = [c for c in group if c.digest not in c.reached]
        self.spared += len(group) - len(pending)
        if not pending:
            return
        if -(-size // PAGE) < len(pending):  # fewer pages than HEADs
            wanted = {c.obj.key for c in pending}
            modified: dict[str, float] = {}
            async for page in self.store.list(shard):
                modified.update((o.key, o.last_modified) for o in page.objects if o.key in wanted)
            stamps: list[float | None] = [modified.get(c.obj.key) for c in pending]
        else:
            stamps = [await self._modified(c.obj.key) for c in pending]
        for c, stamp in zip(pending, stamps, strict=True):
            if stamp is None:
                continue  # deleted already (another gc)
            when = datetime.fromtimestamp(stamp, UTC)
            if c.digest in c.reached or not still_garbage(
                c.obj, when, set(), self.now(), self.grace
            ):
                self.spared += 1
                continue
            await self.store.delete(c.obj.key)
            c.done.append(c.obj)

    async def _modified(self, key: str) -> float | None:
        try:
            return (await self.store.head(key)).last_modified
        except NotFound:
            return None

    async def _remark_moved_heads(self) -> None:
        """Read every head again (devices that appeared since included) and mark what the
        ones that moved reach."""
        devices = await device_ids(self.store, self.keys)
        fresh = await read_heads(self.store, self.keys, devices, previous=self.heads)
        stop_if(fresh.failed.values(), "reading the heads again")
        old = self.heads.roots()
        moved = [(f"{d} head", t) for d, t in fresh.roots().items() if old.get(d) != t]
        await self.marker.mark(moved)
        stop_if([f.line() for f in self.marker.findings.values() if f.kind == "tree"], "marking")
        self.heads = fresh
