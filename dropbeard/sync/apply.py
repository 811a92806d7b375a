"""Applying a plan to the folder: verified downloads, local copies instead of downloads,
conflict copies, local deletes (IO: local files, store reads).

Nothing is written outside the root or through a symlink; every file lands by rename from
a temporary file beside it (after its bytes verified against their SHA-256; named by
`sync.partfiles`, never synced), every symlink by rename from `.dropbear/tmp/`, and only
if the destination did not change since the scan (else it is left for the next pass,
where it shows up as a conflict). A type change (file <-> folder <-> symlink) replaces
the old item only if the scan saw it and it is unchanged, a folder only once this plan
emptied it; a folder still holding other things, or a special file in the way, is a
problem. A path that fails keeps its old base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial

import anyio

from dropbeard.core.chunking import Chunk
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.core.plan import Download, Plan
from dropbeard.store.base import Progress, Store
from dropbeard.sync.applied import Applied
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.disknames import DiskNames, case_problems
from dropbeard.sync.fetch import Fetcher, streams
from dropbeard.sync.folderwriter import FolderWriter
from dropbeard.sync.root import RootPaths
from dropbeard.sync.scan import ScanResult
from dropbeard.sync.sources import LocalSources, remove_all
from dropbeard.sync.trips import ThreadTrips, run_in_order
from dropbeard.sync.workers import for_each_prepared, in_batches

#: Local deletes, new directories and files' places vetted per worker-thread trip.
STEPS_PER_TRIP = 256
#: Files vetted in the first trip: their downloads start while the rest are vetted.
FIRST_VETTED = 32
#: One write: (path, path written: itself or its conflict copy's, entry, is a copy).
_Write = tuple[str, str, Entry, bool]


async def apply_plan(
    paths: RootPaths,
    store: Store,
    keys: RootKeys,
    plan: Plan,
    scanned: ScanResult,
    *,
    budget: TransferBudget,
    progress: Progress | None = None,
    local_chunks: Callable[[], Iterable[tuple[str, Sequence[Chunk]]]] | None = None,
) -> Applied:
    """Apply `plan` to the folder as `scanned` saw it, transfers within `budget`.

    A file stored in chunks is assembled from its chunks (`download_chunks`), taking every
    chunk a local file holds: the scanned files, and those `local_chunks()` names (the
    stat cache's large files: (path, chunk list)), asked only when a write needs chunks.
    """
    out = Applied()
    names = DiskNames(paths.root, scanned.items)
    sources = LocalSources()
    fetcher = Fetcher(store, keys, budget, sources, progress)
    writer = FolderWriter(paths, scanned, names, out, fetcher, sources)
    writes = [(d.path, d.path, d.entry, False) for d in plan.downloads if d.entry.type != "dir"]
    writes += [
        (c.path, c.copy_path, c.entry, True) for c in plan.conflict_copies if c.entry.type != "dir"
    ]
    dirs = [d for d in plan.downloads if d.entry.type == "dir"]
    if writes or dirs:  # a path this filesystem cannot hold apart is a problem, not a write
        refused = await anyio.to_thread.run_sync(case_problems, plan, scanned.items, paths.tmp)
        for problem in refused:
            writer.fail(problem.path, problem.kind, problem.message)
        writes = [w for w in writes if w[0] not in out.failed]
        dirs = [d for d in dirs if d.path not in out.failed]
        writes.sort(key=_first_largest)
    if writes:  # before deletes: a deleted file's bytes may be what a rename needs
        wanted = {c.sha256 for _, _, e, _ in writes for c in e.chunks or ()}
        await anyio.to_thread.run_sync(sources.index_all, paths.root, scanned, wanted, local_chunks)
    # In order, a worker-thread trip per batch: deletes deepest first, as planned; then
    # the writes (`_vet_and_write`), each batch's trip first making the new folders its
    # files go in, parents before children; then the folders no write needed.
    fetcher.trips = ThreadTrips(on_trip=writer.new_trip)
    steps: list[Callable[[], None]]
    steps = [partial(writer.delete, gone.path, gone.expected) for gone in plan.local_deletes]
    await _in_trips(writer, steps)
    folders = _Folders(writer, dirs)
    # More workers than request slots: some do local file work while others download.
    await _vet_and_write(writer, writes, 2 * budget.small_requests, folders)
    await _in_trips(writer, folders.rest())
    if sources.parked:
        await anyio.to_thread.run_sync(remove_all, sources.parked)
    out.copied_locally, out.downloaded = fetcher.copied, fetcher.downloaded
    out.downloaded_bytes, out.reused_bytes = fetcher.downloaded_bytes, fetcher.reused_bytes
    return out


def _first_largest(write: _Write) -> tuple[bool, int]:
    """The order writes start in: the files that stream (`streams`) first, largest first,
    then the rest as planned. A large file started last runs alone at the end, on one
    connection; started first, the small files fill the gaps around it (over a 30 ms
    link a 150 MiB file takes seconds)."""
    entry = write[2]
    if streams(entry):
        return False, -(entry.size or 0)
    return True, 0


class _Folders:
    """The plan's folders to make (or to set the mode of), made as the writes need them:
    a write's new parent folders in the trip that vets it, so the first downloads start
    after a few folders are made, not all (a first sync makes thousands)."""

    def __init__(self, writer: FolderWriter, dirs: Sequence[Download]) -> None:
        self._writer = writer
        self._pending = {d.path: d for d in dirs}  # parents before children

    def for_writes(self, written: Iterable[str]) -> list[Callable[[], None]]:
        """The steps making the pending folders above these paths, parents first."""
        made: list[Download] = []
        for path in written:
            above: list[Download] = []  # nearest first
            parent = path.rpartition("/")[0]
            while parent:
                if parent in self._pending:
                    above.append(self._pending.pop(parent))
                parent = parent.rpartition("/")[0]
            made += reversed(above)
        return self._steps(made)

    def rest(self) -> list[Callable[[], None]]:
        """The steps making the folders no write needed (empty ones, mode changes)."""
        made, self._pending = list(self._pending.values()), {}
        return self._steps(made)

    def _steps(self, made: list[Download]) -> list[Callable[[], None]]:
        w = self._writer
        return [partial(w.guarded, d.path, w.make_dir, d.path, d.entry) for d in made]


async def _vet_and_write(
    writer: FolderWriter, writes: list[_Write], workers: int, folders: _Folders
) -> None:
    """Vet the writes' places (`FolderWriter.vet`) a batch per worker-thread trip (after
    making the new folders they go in), and write each batch's files that may be written
    while the next batches are vetted: the first downloads start after one short trip,
    not after every place was looked at."""

    async def vet(batch: list[_Write]) -> list[_Write]:
        files = [w for w in batch if w[2].type == "file"]  # symlinks are not vetted
        steps = folders.for_writes(w[1] for w in batch)
        steps += [partial(writer.vet, *w) for w in files]
        await anyio.to_thread.run_sync(_one_trip, writer, steps)
        return [w for w in batch if w[1] not in writer.blocked]

    async def write(item: _Write) -> None:
        await writer.write(*item)

    batches = in_batches(writes, FIRST_VETTED, STEPS_PER_TRIP)
    await for_each_prepared(batches, vet, write, workers)


async def _in_trips(writer: FolderWriter, steps: list[Callable[[], None]]) -> None:
    """`steps` in order, STEPS_PER_TRIP of them per worker-thread trip."""
    for i in range(0, len(steps), STEPS_PER_TRIP):
        await anyio.to_thread.run_sync(_one_trip, writer, steps[i : i + STEPS_PER_TRIP])


def _one_trip(writer: FolderWriter, steps: list[Callable[[], None]]) -> None:
    """`steps` in order, in one worker-thread trip of their own (`FolderWriter.new_trip`)."""
    writer.new_trip()
    run_in_order(steps)


__all__ = ["Applied", "apply_plan"]
