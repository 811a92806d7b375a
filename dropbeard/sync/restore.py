"""Bringing back a file or folder from history (SPEC 8.3): into the root as a new local
change, or into another folder (IO: local files in worker threads, store reads).

Nothing on disk is destroyed: before anything is written, every destination that exists
with other content is checked, and if that content is not in any retained version of
its path (an edit no device has seen) the whole restore is refused. Each file is
downloaded (verified against its SHA-256) into a temporary file and renamed into place,
only if its destination did not change since it was checked; the next sync pass sees a
changed file and publishes it as a new version dominating the old ones.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec

from dropbeard.core.errors import DropbeardError, IntegrityError, NotFound, UsageError
from dropbeard.core.tree import TreeEntry
from dropbeard.store.base import Store
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.chunkdownload import download_chunks
from dropbeard.sync.history import History, below
from dropbeard.sync.meter import PassMeter
from dropbeard.sync.metered import MeteredStore
from dropbeard.sync.workers import for_each, unwrapped

CONCURRENCY = 8
_SAME = "same"


class Item(msgspec.Struct, frozen=True):
    """One thing to write: `path` in the root, `dest` on disk; `entry` None for a file
    known only from a tombstone (its one blob, of unknown size)."""

    path: str
    dest: Path
    entry: TreeEntry | None
    sha256: str | None = None


class Restored(msgspec.Struct):
    written: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)  # already held that content
    skipped: list[str] = msgspec.field(default_factory=list)  # changed while we worked: left alone
    bytes: int = 0


class UnsyncedEdit(UsageError):
    """Restoring would overwrite content no retained version holds (SPEC 8.3)."""


def plan_items(
    paths: list[tuple[str, TreeEntry]], top: str, target: Path, into_root: bool
) -> list[Item]:
    """Where each (path, entry) goes: `target / path` in the root, else under `target`
    named from `top`'s last segment down."""
    base = top.rpartition("/")[0]
    items = []
    for path, entry in paths:
        rel = path[len(base) + 1 :] if base else path
        items.append(Item(path, target / (path if into_root else rel), entry, entry.sha256))
    return items


async def expand(history: History, path: str, entry: TreeEntry) -> list[tuple[str, TreeEntry]]:
    """`entry` at `path`, and everything inside it when it is a folder."""
    found = [(path, entry)] if path else []
    if entry.type == "dir":
        found += [item async for item in below(history, entry, path)]
    return found


async def check_destinations(
    items: list[Item], history: History, root: Path | None
) -> dict[str, os.stat_result]:
    """Stat every destination; for one holding other content, look its content up in the
    retained versions of its path (in the root), or refuse (outside it, nothing is ever
    replaced). Returns what each existing destination looked like when checked."""
    checked: dict[str, os.stat_result] = {}
    refused: list[str] = []
    for item in items:
        st, digest = await anyio.to_thread.run_sync(_look, item)
        if st is None:
            continue
        checked[item.path] = st
        if digest == _SAME:
            continue
        if root is None or not await _retained(history, item.path, st, digest):
            refused.append(item.path)
    if refused:
        shown = ", ".join(refused[:5]) + (
            f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        )
        where = "holds an edit no retained version has" if root else "already exists there"
        hint = "restore with --to DIR" if root else "choose an empty DIR"
        raise UnsyncedEdit(f"refusing to restore: {shown} {where}; {hint} to keep both")
    return checked


def _look(item: Item) -> tuple[os.stat_result | None, str | None]:
    """The destination's stat and what it holds: `_SAME` if it already is the item, a
    file's sha256, a symlink's `->target`, or None for anything else."""
    dest, entry = item.dest, item.entry
    try:
        st = os.lstat(dest)
    except (FileNotFoundError, NotADirectoryError):  # absent (or a file where its folder was)
        return None, None
    if entry is not None and entry.type == "dir":  # only a folder may stand in for one
        return st, _SAME if stat.S_ISDIR(st.st_mode) else None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(dest)
        same = entry is not None and entry.type == "symlink" and entry.target == target
        return st, _SAME if same else f"->{target}"
    if not stat.S_ISREG(st.st_mode):  # a folder, or a special file, in the way
        return st, None
    digest = sha256_of_file(dest)
    same = (entry is None or entry.type == "file") and item.sha256 == digest
    return st, _SAME if same else digest


def sha256_of_file(path: Path) -> str:
    """The SHA-256 of a local file, read in 1 MiB blocks (blocking: run in a thread)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def _retained(history: History, path: str, st: os.stat_result, held: str | None) -> bool:
    """True if what `path` holds now is in one of its retained versions (synced once)."""
    if held is None:
        return False
    for snaps in (await history.held(path)).values():
        for _, entry in snaps:
            if entry is None:
                continue
            if entry.type == "file" and entry.sha256 == held:
                return True
            if entry.type == "symlink" and held == f"->{entry.target}":
                return True
    return False


async def write_items(
    store: Store,
    history: History,
    items: list[Item],
    checked: dict[str, os.stat_result],
    tmp_dir: Path,
    *,
    meter: PassMeter | None = None,
) -> Restored:
    """Write every item (folders first, then files and links concurrently)."""
    out = Restored()
    files = [i for i in items if i.entry is None or i.entry.type != "dir"]
    for item in items:
        if item.entry is not None and item.entry.type == "dir":
            await anyio.to_thread.run_sync(_make_dir, item.dest, item.entry.mode)
    if meter is not None:
        sized = [(i.sha256, i.path, i.entry.size or 0) for i in files if i.entry and i.sha256]
        meter.name_blobs((s, p, n) for s, p, n in sized if s is not None)
        meter.begin("downloading", len(files), sum(n for _, _, n in sized))
        store = MeteredStore(store, meter)
    writer = _Writer(store, history, tmp_dir, checked, out)
    with unwrapped():
        await for_each(files, writer.write, CONCURRENCY)
    if meter is not None:
        meter.end()
    out.written.sort()
    return out


class _Writer(msgspec.Struct):
    store: Store
    history: History
    tmp_dir: Path
    checked: dict[str, os.stat_result]
    out: Restored
    budget: TransferBudget = msgspec.field(default_factory=lambda: TransferBudget(4))

    async def write(self, item: Item) -> None:
        was = self.checked.get(item.path)
        if was is not None:
            _, held = await anyio.to_thread.run_sync(_look, item)
            if held == _SAME:
                self.out.unchanged.append(item.path)
                return
        await anyio.to_thread.run_sync(_make_parents, item.dest)
        temp = self.tmp_dir / f"restore-{uuid.uuid4().hex}"
        try:
            await self._fetch(item, temp)
            place: Callable[[], bool] = lambda: _replace(temp, item.dest, was)  # noqa: E731
            if await anyio.to_thread.run_sync(place):
                self.out.written.append(item.path)
            else:
                self.out.skipped.append(item.path)
        finally:
            await anyio.to_thread.run_sync(lambda: temp.unlink(missing_ok=True))

    async def _fetch(self, item: Item, temp: Path) -> None:
        entry, keys = item.entry, self.history.keys
        if entry is not None and entry.type == "symlink":
            assert entry.target is not None
            await anyio.to_thread.run_sync(os.symlink, entry.target, temp)
            return
        assert item.sha256 is not None
        try:
            if entry is not None and entry.chunks:
                assert entry.size is not None
                done = await download_chunks(
                    self.store, keys, item.sha256, entry.size, entry.chunks,
                    tmp_dir=self.tmp_dir, find=lambda _: None, budget=self.budget,
                )  # fmt: skip
                await anyio.to_thread.run_sync(os.replace, done.file, temp)
            else:
                await self.store.get_file(keys.blob(item.sha256), temp, expected_sha256=item.sha256)
        except NotFound as exc:
            raise DropbeardError(
                f"restoring {item.path}: its content is gone from the bucket ({exc})"
            ) from None
        except IntegrityError as exc:
            raise IntegrityError(f"restoring {item.path}: {exc}", exc.key) from None
        self.out.bytes += await anyio.to_thread.run_sync(lambda: temp.stat().st_size)
        if entry is not None:
            assert entry.mtime_ns is not None
            await anyio.to_thread.run_sync(_finish, temp, entry.mode, entry.mtime_ns)


def _finish(temp: Path, mode: int, mtime_ns: int) -> None:
    os.chmod(temp, mode)
    os.utime(temp, ns=(mtime_ns, mtime_ns))


def _make_dir(dest: Path, mode: int) -> None:
    _make_parents(dest)
    try:
        os.mkdir(dest, mode)
    except FileExistsError:
        if not dest.is_dir() or dest.is_symlink():
            raise UsageError(f"cannot restore the folder {dest}: something else is there") from None


def _make_parents(dest: Path) -> None:
    """Create the folders above `dest`, refusing to go through a symlink or a file."""
    missing = []
    parent = dest.parent
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = parent.parent
    for folder in [parent, *reversed(missing)]:
        if os.path.lexists(folder) and (os.path.islink(folder) or not os.path.isdir(folder)):
            raise UsageError(f"cannot restore into {dest}: {folder} is not a folder")
        if not os.path.lexists(folder):
            os.mkdir(folder)


def _replace(temp: Path, dest: Path, was: os.stat_result | None) -> bool:
    """Rename `temp` onto `dest` if `dest` is as it was when checked (absent, or the same
    file unchanged); False, leaving it alone, if it changed meanwhile."""
    try:
        now = os.lstat(dest)
    except (FileNotFoundError, NotADirectoryError):
        now = None
    if _identity(now) != _identity(was):
        return False
    os.replace(temp, dest)
    return True


def _identity(st: os.stat_result | None) -> tuple[int, ...] | None:
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
