"""Applying a plan to the folder: verified downloads, local copies instead of downloads,
conflict copies, local deletes (IO: local files, store reads).

Nothing is written outside the root or through a symlink; every file lands by atomic
rename from `.dropbear/tmp/` after its bytes verified against their SHA-256, and only if
the destination did not change since the scan (else it is left for the next pass, where
it shows up as a conflict). A path that fails keeps its old base.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio

from dropbeard.core.errors import IntegrityError, LocalFileError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.core.plan import Plan
from dropbeard.core.problems import Problem
from dropbeard.store.base import Progress, Store
from dropbeard.sync.disknames import DiskNames, case_problems
from dropbeard.sync.root import RootPaths
from dropbeard.sync.scan import LocalItem, ScanResult
from dropbeard.sync.state import StatRow
from dropbeard.sync.workers import for_each


@dataclass
class Applied:
    downloaded: int = 0
    downloaded_bytes: int = 0
    copied_locally: int = 0
    deleted: int = 0
    failed: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    #: stat-cache rows for files written this pass, so they are not re-hashed
    stats: dict[str, StatRow] = field(default_factory=dict)


class UnsafePath(Exception):
    pass


async def apply_plan(
    paths: RootPaths,
    store: Store,
    keys: RootKeys,
    plan: Plan,
    scanned: ScanResult,
    *,
    concurrency: int,
    progress: Progress | None = None,
) -> Applied:
    out = Applied()
    names = DiskNames(paths.root, scanned.items)
    writer = _FolderWriter(paths, store, keys, scanned, names, progress, out)
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
    if writes:  # before deletes: a deleted file's bytes may be what a rename needs
        await anyio.to_thread.run_sync(writer.sources.index, paths.root, scanned)
    for gone in plan.local_deletes:  # deepest first, as planned
        await anyio.to_thread.run_sync(writer.delete, gone.path, gone.expected)
    for d in dirs:  # directories first, parents before children
        await anyio.to_thread.run_sync(writer.guarded, d.path, writer.make_dir, d.path, d.entry)
    limiter = anyio.CapacityLimiter(max(1, concurrency))

    async def write(item: tuple[str, str, Entry, bool]) -> None:
        await writer.write(limiter, *item)

    await for_each(writes, write, concurrency)
    if writer.sources.parked:
        await anyio.to_thread.run_sync(_remove_all, writer.sources.parked)
    return out


@dataclass
class _LocalSources:
    """Where this apply finds a blob's bytes on local disk, so a file is copied instead of
    downloaded (a rename costs nothing), and which blobs are being fetched right now, so
    no blob is fetched twice in one pass.

    Shared by the concurrent writes of one `apply_plan`; every `claim` that returns None
    must be followed by one `release` of the same blob.
    """

    #: sha256 -> a verified local file holding those bytes
    have: dict[str, Path] = field(default_factory=dict)
    #: sha256 -> set when the in-flight fetch of that blob ends (landed or failed)
    fetching: dict[str, anyio.Event] = field(default_factory=dict)
    #: deleted files kept in tmp/ as sources until the writes are done
    parked: list[Path] = field(default_factory=list)

    def index(self, root: Path, scanned: ScanResult) -> None:
        """Remember which scanned files hold which bytes."""
        for path, item in scanned.items.items():
            if item.type == "file" and item.sha256:
                self.have.setdefault(item.sha256, root / (item.disk_path or path))

    def is_source(self, sha: str, file: Path) -> bool:
        """True if `file` is where this apply would copy blob `sha` from."""
        return self.have.get(sha) == file

    def park(self, sha: str, parked: Path) -> None:
        """A deleted source moved to `parked` (in tmp/): copy from there; removed at the end."""
        self.have[sha] = parked
        self.parked.append(parked)

    def add(self, sha: str, file: Path) -> None:
        """`file` was just written with blob `sha`'s verified bytes."""
        self.have.setdefault(sha, file)

    async def claim(self, sha: str) -> Path | None:
        """A verified local file with these bytes, waiting for an in-flight fetch of the
        same blob instead of fetching it twice; None means the caller fetches it."""
        while sha not in self.have and sha in self.fetching:
            await self.fetching[sha].wait()
        if sha in self.have:
            return self.have[sha]
        self.fetching[sha] = anyio.Event()
        return None

    def release(self, sha: str) -> None:
        """The caller's fetch of `sha` ended: wake those waiting in `claim`."""
        event = self.fetching.pop(sha, None)
        if event is not None:
            event.set()


@dataclass
class _FolderWriter:
    """Writes one plan into the folder: local deletes, folders, symlinks and files, each
    path only inside the root, never through a symlink, in the spelling the disk holds
    (`names`), and only if it still is what the scan saw (`scanned`). Files come from
    `sources` when their bytes are already on disk, else from `store`. Each path's
    outcome goes to `out`: counts, stat rows, and a failed path with its problem (it
    keeps its old base).
    """

    paths: RootPaths
    store: Store
    keys: RootKeys
    scanned: ScanResult
    names: DiskNames
    progress: Progress | None
    out: Applied
    sources: _LocalSources = field(default_factory=_LocalSources)

    # -- helpers --------------------------------------------------------------------

    def fail(self, path: str, kind: str, message: str) -> None:
        self.out.failed.add(path)
        self.out.problems.append(Problem(path=path, kind=kind, message=message))

    def guarded(self, path: str, fn: Callable[..., None], *args: object) -> None:
        """`fn(*args)`, with an unsafe path or an OS error recorded as `path`'s problem."""
        try:
            fn(*args)
        except UnsafePath as exc:
            self.fail(path, "unsafe_path", str(exc))
        except OSError as exc:
            self.fail(path, _kind(exc), f"writing {path}: {exc.strerror or exc}")

    def target(self, rel: str) -> Path:
        """The absolute path for `rel`, in the spelling the disk holds, after checking
        every parent inside the root is a real directory (created if missing); never
        through a symlink."""
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts) or parts[0] == ".dropbear":
            raise UnsafePath(f"refusing {rel!r}: not a safe relative path")
        parts = self.names.disk(rel).split("/")
        current = self.paths.root
        for part in parts[:-1]:
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePath(f"refusing {rel!r}: its parent {part!r} is a symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePath(f"refusing {rel!r}: its parent {part!r} is not a directory")
        return current / parts[-1]

    def unchanged_since_scan(self, rel: str, dest: Path) -> bool:
        item = self.scanned.items.get(rel)
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return item is None
        if item is None:
            return False
        return _same(item, st)

    # -- deletes --------------------------------------------------------------------

    def delete(self, rel: str, expected: Entry) -> None:
        try:
            dest = self.target(rel)
            st = os.lstat(dest)
        except FileNotFoundError:
            return
        except (UnsafePath, OSError) as exc:
            self.fail(rel, "unsafe_path", f"deleting {rel}: {exc}")
            return
        item = self.scanned.items.get(rel)
        if item is None or not _same(item, st):
            self.out.failed.add(rel)  # changed since the scan: the next pass decides
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(dest)
            elif item.sha256 is not None and self.sources.is_source(item.sha256, dest):
                # Its bytes may be the other half of a rename: park them in tmp/ as the
                # local source for that download; apply_plan removes them at the end.
                parked = self.paths.tmp / uuid.uuid4().hex
                os.replace(dest, parked)
                self.sources.park(item.sha256, parked)
            else:
                os.unlink(dest)
            self.out.deleted += 1
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                self.fail(
                    rel,
                    "kept_directory",
                    f"kept folder {rel}: it still holds untracked or ignored files",
                )
            else:
                self.fail(rel, _kind(exc), f"deleting {rel}: {exc.strerror or exc}")

    # -- directories and symlinks ----------------------------------------------------

    def make_dir(self, rel: str, entry: Entry) -> None:
        dest = self.target(rel)
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            os.mkdir(dest, entry.mode & 0o7777 or 0o755)
            st = os.lstat(dest)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"refusing to replace {rel!r} with a folder")
        os.chmod(dest, entry.mode & 0o7777)

    def make_symlink(self, rel: str, dest_rel: str, entry: Entry, is_copy: bool) -> None:
        dest = self.target(dest_rel)
        if not is_copy and not self.unchanged_since_scan(rel, dest):
            self.out.failed.add(rel)
            return
        tmp = dest.with_name(f".{dest.name}.dropbeard-{uuid.uuid4().hex[:8]}")
        os.symlink(entry.target or "", tmp)
        os.replace(tmp, dest)

    # -- files ----------------------------------------------------------------------

    async def write(
        self, limiter: anyio.CapacityLimiter, rel: str, dest_rel: str, entry: Entry, is_copy: bool
    ) -> None:
        async with limiter:
            if entry.type == "symlink":
                await anyio.to_thread.run_sync(
                    self.guarded, rel, self.make_symlink, rel, dest_rel, entry, is_copy
                )
                return
            try:
                await self.write_file(rel, dest_rel, entry, is_copy)
            except IntegrityError as exc:
                self.fail(rel, "integrity", f"{dest_rel}: {exc}")
            except NotFound:
                self.fail(
                    rel, "missing_blob", f"{rel}: blob {entry.sha256} is missing from the bucket"
                )
            except UnsafePath as exc:
                self.fail(rel, "unsafe_path", str(exc))
            except OSError as exc:
                self.fail(rel, _kind(exc), f"writing {dest_rel}: {exc.strerror or exc}")
            except LocalFileError as exc:  # our disk, not the store: a problem for this path
                self.fail(rel, _kind(exc), f"writing {dest_rel}: {exc}")

    async def write_file(self, rel: str, dest_rel: str, entry: Entry, is_copy: bool) -> None:
        assert entry.sha256 is not None
        tmp = self.paths.tmp / uuid.uuid4().hex
        source = await self.sources.claim(entry.sha256)
        try:
            if source is not None:
                await anyio.to_thread.run_sync(_copy_verified, source, tmp, entry.sha256)
                self.out.copied_locally += 1
            else:
                await self.store.get_file(
                    self.keys.blob(entry.sha256),
                    tmp,
                    expected_sha256=entry.sha256,
                    progress=self.progress,
                )
                self.out.downloaded += 1
                self.out.downloaded_bytes += entry.size or 0
            row = await anyio.to_thread.run_sync(self.install, rel, dest_rel, tmp, entry, is_copy)
        except BaseException:
            await anyio.to_thread.run_sync(partial(tmp.unlink, missing_ok=True))
            self.sources.release(entry.sha256)
            raise
        if row is not None:
            self.sources.add(entry.sha256, self.paths.root / self.names.disk(dest_rel))
            if not is_copy:
                self.out.stats[rel] = row
        self.sources.release(entry.sha256)

    def install(
        self, rel: str, dest_rel: str, tmp: Path, entry: Entry, is_copy: bool
    ) -> StatRow | None:
        dest = self.target(dest_rel)
        if not is_copy and not self.unchanged_since_scan(rel, dest):
            tmp.unlink(missing_ok=True)
            self.out.failed.add(rel)  # edited meanwhile: the next pass sees a conflict
            return None
        if is_copy and os.path.lexists(dest):
            tmp.unlink(missing_ok=True)
            return None  # this conflict copy was already written
        os.chmod(tmp, entry.mode & 0o7777)
        if entry.mtime_ns is not None:
            os.utime(tmp, ns=(entry.mtime_ns, entry.mtime_ns))
        os.replace(tmp, dest)
        st = os.lstat(dest)
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, entry.sha256 or "")


def _same(item: LocalItem, st: os.stat_result) -> bool:
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
    if kind != item.type:
        return False
    if kind != "file" or item.stat is None:
        return True
    s = item.stat
    return (s.size, s.mtime_ns, s.inode, s.ctime_ns) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_ctime_ns,
    )


def _remove_all(files: list[Path]) -> None:
    for f in files:
        f.unlink(missing_ok=True)


def _copy_verified(source: Path, dest: Path, sha: str) -> None:
    h = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != sha:
        dest.unlink(missing_ok=True)
        raise IntegrityError(f"copying {source}: it changed since it was scanned", str(source))


def _kind(exc: OSError | LocalFileError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission"
    if exc.errno == errno.ENOSPC:
        return "disk_full"
    if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
        return "invalid_name"
    return "io_error"


__all__ = ["Applied", "apply_plan"]
