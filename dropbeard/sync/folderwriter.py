"""Writing one plan's paths into the folder: local deletes, folders, symlinks and files,
only inside the root, never through a symlink, and only over what the scan saw (IO: local
files; the bytes come from `Fetcher`)."""

from __future__ import annotations

import errno
import itertools
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio

from dropbeard.core.errors import IntegrityError, LocalFileError, NotFound
from dropbeard.core.model import PERMISSIONS, Entry
from dropbeard.core.problems import Problem
from dropbeard.sync.applied import Applied, Refused, UnsafePath
from dropbeard.sync.disknames import DiskNames
from dropbeard.sync.fetch import Fetcher
from dropbeard.sync.ondisk import (
    is_empty,
    is_special,
    kept_folder_message,
    problem_kind,
    same_as_scanned,
    special_message,
)
from dropbeard.sync.partfiles import part_name
from dropbeard.sync.root import RootPaths
from dropbeard.sync.scan import LocalItem, ScanResult
from dropbeard.sync.sources import LocalSources
from dropbeard.sync.state import StatRow


@dataclass  # not a Struct: __post_init__ adds its working sets
class FolderWriter:
    """Writes one plan into the folder: local deletes, folders, symlinks and files, each
    path only inside the root, never through a symlink, in the spelling the disk holds
    (`names`), and only if it still is what the scan saw (`scanned`). Files come from
    `sources` when their bytes are already on disk, else from the bucket. Each path's
    outcome goes to `out`: counts, stat rows, and a failed path with its problem (it
    keeps its old base).
    """

    paths: RootPaths
    scanned: ScanResult
    names: DiskNames
    out: Applied
    #: gets each file's verified bytes into a temporary file beside it, from `sources` or
    #: the bucket
    fetcher: Fetcher
    sources: LocalSources

    def __post_init__(self) -> None:
        self.blocked: set[str] = set()  # files' places found taken (`vet`)
        self.tmp_dir = self.paths.tmp  # a path built once, not per file
        self._tmp_prefix = uuid.uuid4().hex[:16]
        self._tmp_count = itertools.count()
        #: folders found real directories this trip, by their disk spelling (`locate`)
        self._real_dirs: dict[str, Path] = {}
        #: folders this apply made, by their disk spelling: nothing was in them (a first
        #: sync makes them all)
        self._made: set[str] = set()

    def tmp_path(self, kind: str = "") -> Path:
        """A new name in tmp/ (emptied when a pass starts): unique within this apply by a
        counter, and against any other by a random prefix drawn once, not per file."""
        return self.tmp_dir / f"{kind}{self._tmp_prefix}-{next(self._tmp_count)}"

    # -- helpers --------------------------------------------------------------------

    def fail(self, path: str, kind: str, message: str) -> None:
        self.out.failed.add(path)
        self.out.problems.append(Problem(path=path, kind=kind, message=message))

    def guarded(self, path: str, fn: Callable[..., None], *args: object) -> None:
        """`fn(*args)`, with an unsafe path or an OS error recorded as `path`'s problem."""
        try:
            fn(*args)
        except Refused as exc:
            self.fail(path, exc.kind, str(exc))
        except OSError as exc:
            self.fail(path, problem_kind(exc), f"writing {path}: {exc.strerror or exc}")

    def target(self, rel: str) -> Path:
        """The absolute path for `rel`, in the spelling the disk holds, after checking
        every parent inside the root is a real directory (created if missing); never
        through a symlink (`locate`)."""
        return self.locate(rel)[1]

    def locate(self, rel: str) -> tuple[str, Path]:
        """`rel`'s folder as the disk spells it (relative to the root, "" for the root
        itself) and `rel`'s absolute path (`target`). A folder found a real directory is
        not looked at again in the same worker-thread trip (`new_trip`): the files of one
        folder share it, and cost a lookup instead of a walk from the root."""
        parts = rel.split("/")
        if "" in parts or "." in parts or ".." in parts or parts[0] == ".dropbear":
            raise UnsafePath(f"refusing {rel!r}: not a safe relative path")
        folder, _, name = self.names.disk(rel).rpartition("/")
        if not folder:
            return folder, self.paths.root / name
        parent = self._real_dirs.get(folder)
        if parent is None:
            parent = self._make_sure(rel, folder)
        return folder, parent / name

    def _make_sure(self, rel: str, folder: str) -> Path:
        """The absolute path of `folder` (a disk spelling, relative to the root), each
        level checked a real directory or made, walking down from the root."""
        current, known = self.paths.root, self._real_dirs
        prefix = ""
        for part in folder.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            seen = known.get(prefix)
            if seen is not None:
                current = seen
                continue
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                try:
                    os.mkdir(current)
                    known[prefix] = current
                    self._made.add(prefix)
                    continue
                except FileExistsError:  # made meanwhile (a concurrent write): vet it
                    st = os.lstat(current)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePath(f"refusing {rel!r}: its parent {part!r} is a symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePath(f"refusing {rel!r}: its parent {part!r} is not a directory")
            known[prefix] = current
        return current

    def _forget_dir(self, dest: Path) -> None:
        """Folder `dest` was removed: a path below it is looked at again (`locate`)."""
        self._real_dirs.pop(dest.relative_to(self.paths.root).as_posix(), None)

    def new_trip(self) -> None:
        """A worker-thread trip begins: every parent is looked at again (`target`)."""
        self._real_dirs = {}

    def unchanged_since_scan(self, rel: str, dest: Path) -> bool:
        item = self.scanned.items.get(rel)
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return item is None
        if item is None:
            return False
        return same_as_scanned(item, st)

    # -- deletes --------------------------------------------------------------------

    def delete(self, rel: str, expected: Entry) -> None:
        try:
            dest = self.target(rel)
            st = os.lstat(dest)
        except FileNotFoundError:
            return
        except (Refused, OSError) as exc:
            self.fail(rel, "unsafe_path", f"deleting {rel}: {exc}")
            return
        item = self.scanned.items.get(rel)
        if item is None or not same_as_scanned(item, st):
            self.out.failed.add(rel)  # changed since the scan: the next pass decides
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(dest)
                self._forget_dir(dest)
            else:  # its bytes may be the other half of a rename: remove_file parks them
                self.remove_file(dest, item)
            self.out.deleted += 1
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                # It still holds what this device does not sync (ignored or special files,
                # or new ones since the scan): the delete is done for what was synced, and
                # the folder stays for the rest, local-only (`core.passrules.leftovers`).
                self.out.kept.append(rel)
            else:
                self.fail(rel, problem_kind(exc), f"deleting {rel}: {exc.strerror or exc}")

    # -- what is in the way -----------------------------------------------------------

    def clear_for_folder(self, rel: str, dest: Path) -> bool:
        """Make room for folder `rel` at `dest`: a file or symlink the scan saw there,
        unchanged since, is removed (its bytes kept as a local source if a write needs
        them). False if something else holds the path: changed since the scan (the next
        pass decides) or a special file (a problem). A missing path is free."""
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return True
        if stat.S_ISDIR(st.st_mode):
            return True
        item = self.scanned.items.get(rel)
        if item is None and is_special(st):
            self.fail(rel, "special_file", special_message(rel))
            return False
        if item is None or not same_as_scanned(item, st):
            self.out.failed.add(rel)
            return False
        self.remove_file(dest, item)
        return True

    def in_the_way(self, rel: str, dest_rel: str, entry: Entry, is_copy: bool) -> bool:
        """True (the path failed, with a problem where a person must act) if `entry`
        cannot be written at `dest_rel`: a special file there, a folder still holding
        what this device does not track, or a change since the scan. Checked before any
        byte is fetched, so nothing is downloaded again every pass for it."""
        folder, dest = self.locate(dest_rel)
        if folder in self._made:  # a folder this apply made: empty then (and what came
            return False  # since is still caught before the rename, `install`)
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return False
        if is_copy:
            return True  # this conflict copy was already written: nothing to do
        if self.scanned.items.get(rel) is None and is_special(st):
            self.fail(rel, "special_file", special_message(dest_rel))
            return True
        if not self.unchanged_since_scan(rel, dest):
            self.out.failed.add(rel)
            return True
        if stat.S_ISDIR(st.st_mode) and not is_empty(dest):
            self.fail(rel, "type_clash", kept_folder_message(rel, entry))
            return True
        return False

    def vet(self, rel: str, dest_rel: str, entry: Entry, is_copy: bool) -> None:
        """Before any byte is fetched for file `entry`: if `dest_rel` cannot take it
        (`in_the_way`, or a refusal or an error recorded as `rel`'s problem), it is
        `blocked` and not fetched."""
        try:
            if not self.in_the_way(rel, dest_rel, entry, is_copy):
                return
        except Refused as exc:
            self.fail(rel, exc.kind, str(exc))
        except OSError as exc:
            self.fail(rel, problem_kind(exc), f"writing {dest_rel}: {exc.strerror or exc}")
        self.blocked.add(dest_rel)

    def put_in_place(self, rel: str, tmp: Path, dest: Path, entry: Entry) -> None:
        """Rename `tmp` onto `dest`; an empty folder there (its tracked content deleted
        by this plan) is removed first. A folder that is not empty stays, as a problem."""
        try:
            os.replace(tmp, dest)
        except IsADirectoryError:
            try:
                os.rmdir(dest)
                self._forget_dir(dest)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise Refused("type_clash", kept_folder_message(rel, entry)) from None
            os.replace(tmp, dest)

    def remove_file(self, dest: Path, item: LocalItem) -> None:
        """Remove the file or symlink `item` at `dest`; a file whose bytes a write of
        this plan may need is parked in tmp/ as their local source instead."""
        if item.type == "file" and self.sources.is_source(item.sha256, dest):
            parked = self.tmp_path()
            os.replace(dest, parked)
            self.sources.park(item.sha256, dest, parked)
        else:
            os.unlink(dest)

    # -- directories and symlinks ----------------------------------------------------

    def make_dir(self, rel: str, entry: Entry) -> None:
        dest = self.target(rel)
        if not self.clear_for_folder(rel, dest):
            return
        try:
            os.mkdir(dest, entry.mode & PERMISSIONS or 0o755)
            self._made.add(self.names.disk(rel))
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(dest).st_mode):
                raise UnsafePath(f"refusing to replace {rel!r} with a folder") from None
        # Only permission bits are synced; a folder keeps its own setgid and sticky bits.
        kept = stat.S_IMODE(os.lstat(dest).st_mode) & ~PERMISSIONS
        os.chmod(dest, kept | entry.mode & PERMISSIONS)

    def make_symlink(self, rel: str, dest_rel: str, entry: Entry, is_copy: bool) -> None:
        if self.in_the_way(rel, dest_rel, entry, is_copy):
            return
        dest = self.target(dest_rel)
        tmp = self.tmp_path("link-")  # never a temporary in the folder
        os.symlink(entry.target or "", tmp)
        try:
            if not is_copy and not self.unchanged_since_scan(rel, dest):
                self.out.failed.add(rel)
                return
            self.put_in_place(rel, tmp, dest, entry)
        finally:
            tmp.unlink(missing_ok=True)

    # -- files ----------------------------------------------------------------------

    async def write(self, rel: str, dest_rel: str, entry: Entry, is_copy: bool) -> None:
        if entry.type == "symlink":
            await self.fetcher.trips.run(
                partial(self.guarded, rel, self.make_symlink, rel, dest_rel, entry, is_copy)
            )
            return
        try:
            await self.write_file(rel, dest_rel, entry, is_copy)
        except IntegrityError as exc:
            self.fail(rel, "integrity", f"{dest_rel}: {exc}")
        except NotFound as exc:  # a chunk's message names the chunk
            missing = f"blob {entry.sha256} is missing from the bucket"
            self.fail(rel, "missing_blob", f"{rel}: {exc if entry.chunks else missing}")
        except Refused as exc:
            self.fail(rel, exc.kind, str(exc))
        except OSError as exc:
            self.fail(rel, problem_kind(exc), f"writing {dest_rel}: {exc.strerror or exc}")
        except LocalFileError as exc:  # our disk, not the store: a problem for this path
            self.fail(rel, problem_kind(exc), f"writing {dest_rel}: {exc}")

    async def write_file(self, rel: str, dest_rel: str, entry: Entry, is_copy: bool) -> None:
        assert entry.sha256 is not None  # its place was vetted (`vet`) before any fetch
        # beside its destination, whose parents `vet` made sure of (`sync.partfiles`)
        dest = self.paths.root / self.names.disk(dest_rel)
        tmp = dest.with_name(part_name())
        place = partial(self.install, rel, dest_rel, tmp, entry, is_copy)
        try:
            row = await self.fetcher.fill(tmp, entry.sha256, entry.size or 0, place, entry.chunks)
        except BaseException:  # cancelled too: its temporary file must not stay in the folder
            with anyio.CancelScope(shield=True):
                await self.fetcher.trips.run(partial(tmp.unlink, missing_ok=True))
            self.sources.release(entry.sha256)
            raise
        if row is not None:
            self.sources.add(entry.sha256, dest)
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
        os.chmod(tmp, entry.mode & PERMISSIONS)  # never setuid, setgid or sticky bits
        if entry.mtime_ns is not None:
            os.utime(tmp, ns=(entry.mtime_ns, entry.mtime_ns))
        item = None if is_copy else self.scanned.items.get(rel)
        if item is not None and item.sha256 is not None:  # its old bytes go: not a source
            self.sources.drop(item.sha256, self.paths.root / (item.disk_path or rel))
        self.put_in_place(rel, tmp, dest, entry)
        st = os.lstat(dest)
        chunks = None if entry.chunks is None else tuple(entry.chunks)
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, entry.sha256 or "", chunks)


__all__ = ["FolderWriter"]
