"""Walking a root for a scan: directories opened by fd below the root, never through a
symlink; each listing vetted (`.dropbear` and ignored entries dropped, names NFC, invalid
names and two spellings of one NFC name set aside as problems); `only=` paths found
through their parents' listings; the root opened (an unmounted one is offline) (IO: opens
and lists directories, on the scan's walk thread).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import threading
import unicodedata
from collections import Counter
from collections.abc import Collection

import msgspec

from dropbeard.core.conflictname import MARKER, parse_conflict_name
from dropbeard.core.errors import OfflineError
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.paths import LOCAL_DIR
from dropbeard.core.problems import Problem
from dropbeard.sync.partfiles import PREFIX as PART_PREFIX
from dropbeard.sync.partfiles import is_leftover, is_part

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _shown(name: str) -> str:
    """A name as text a person can read, invalid bytes shown as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """False if `name` holds surrogate escapes (os.fsdecode of bytes that are not UTF-8)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _label(name: str) -> str:
    """A colliding on-disk name as shown in a problem: NFD twins would look identical."""
    nfc = name.isascii() or unicodedata.is_normalized("NFC", name)
    return _shown(name) + ("" if nfc else " (decomposed)")


def _copy_of_any(name: str, wanted: set[str]) -> bool:
    """True if `name` is a conflict copy of one of the names `wanted` (same folder)."""
    if MARKER not in name:
        return False
    parsed = parse_conflict_name(name)
    return parsed is not None and parsed[0] in wanted


class _Absent(enum.Enum):
    ABSENT = 0


_ABSENT = _Absent.ABSENT


class Listing(msgspec.Struct):
    """One directory, vetted: `entries`/`names` (NFC) are trackable, `bad` maps a shown
    path to the problem that keeps it out."""

    fd: int
    entries: list[os.DirEntry[str]]
    names: list[str]
    bad: dict[str, tuple[str, str]]
    plain: bool  # every name is ASCII, so each NFC name is the on-disk name


class _Subdirs(msgspec.Struct):
    """A parent's trackable subdirectories (NFC name -> on-disk path if it differs) and
    its set-aside names, for resolving `only=` paths."""

    disk: dict[str, str | None]
    bad: dict[str, tuple[str, str]]


class Walk:
    """The walk thread's half of one scan: lists directories depth-first from `stack` and
    hands each vetted listing to `record`, which a subclass provides and which pushes the
    subdirectories it records back on `stack`. A directory that cannot be listed is a
    problem (or, if it vanished, `forget`-ten) and makes the scan incomplete."""

    def __init__(self, root_fd: int, ignore: IgnoreRules) -> None:
        self.root_fd = root_fd
        self.ignore = ignore
        self.stop = threading.Event()
        self.problems: list[Problem] = []
        self.unreadable: set[str] = set()
        self.complete = True
        self.stack: list[tuple[str, str | None]] = []

    def problem(self, path: str, kind: str, message: str) -> None:
        self.problems.append(Problem(path=path, kind=kind, message=message))
        self.unreadable.add(path)

    def record(
        self,
        prefix: str,
        disk_dir: str | None,
        listing: Listing,
        entries: list[os.DirEntry[str]],
        names: list[str],
    ) -> None:
        """Record `entries` (named `names`, NFC) of the directory `listing`, whose paths
        start with `prefix` (on disk: `disk_dir`, None if the NFC path is the disk's)."""
        raise NotImplementedError

    def forget(self, path: str) -> None:
        """Drop `path`, recorded from its parent's listing: it is gone now."""
        raise NotImplementedError

    def walk(self, targets: set[str] | None) -> None:
        """List `targets` (None: the whole root), then every directory pushed on `stack`."""
        if targets is None:
            self.stack.append(("", None))
        else:
            self.walk_targets(targets)
        while self.stack and not self.stop.is_set():
            self.walk_dir(*self.stack.pop())
            self.listed()

    def listed(self) -> None:
        """Called after each directory of the walk is recorded (a subclass may act)."""

    def walk_dir(self, rel: str, disk: str | None) -> None:
        listing = self.list_dir(rel, disk)
        if listing is None:
            return
        try:
            prefix = rel + "/" if rel else ""
            for path, (kind, message) in listing.bad.items():
                self.problem(prefix + path, kind, message)
            self.record(prefix, disk, listing, listing.entries, listing.names)
        finally:
            os.close(listing.fd)

    def list_dir(self, rel: str, disk: str | None) -> Listing | None:
        """Open and vet one directory; on failure the directory's contents are unknown."""
        try:
            fd = os.open(disk or rel or ".", _DIR_FLAGS, dir_fd=self.root_fd)
        except OSError as e:
            self.dir_failed(rel, e)
            return None
        try:
            with os.scandir(fd) as it:
                entries = list(it)
            return self.vet(rel, fd, entries)
        except OSError as e:
            os.close(fd)
            self.dir_failed(rel, e)
            return None
        except BaseException:
            os.close(fd)
            raise

    def dir_failed(self, rel: str, e: OSError) -> None:
        self.complete = False
        if isinstance(e, FileNotFoundError | NotADirectoryError) or e.errno == errno.ELOOP:
            self.forget(rel)  # gone or replaced since its parent was listed
            self.unreadable.add(rel)
        elif isinstance(e, PermissionError):
            self.problem(rel, "permission", f"cannot list folder {rel or '.'}: permission denied")
        else:
            self.problem(rel, "unreadable", f"cannot list folder {rel or '.'}: {e.strerror}")

    def vet(self, rel: str, fd: int, entries: list[os.DirEntry[str]]) -> Listing:
        """Drop `.dropbear`, downloads in progress (`_without_parts`) and ignored entries;
        set aside invalid names and the spellings of a name that occurs twice once in
        NFC."""
        prefix = rel + "/" if rel else ""
        if not rel:
            entries = [e for e in entries if e.name != LOCAL_DIR]
        names = [e.name for e in entries]
        joined = "\0" + "\0".join(names)
        if _PARTS in joined:  # downloads in progress, or left by a run that died
            entries = _without_parts(fd, entries)
            names = [e.name for e in entries]
        plain = joined.isascii()
        if not plain:
            names = [n if n.isascii() else unicodedata.normalize("NFC", n) for n in names]
        if not self.ignore.is_empty:
            keep = [
                not self.ignore.matches_here(prefix + n, e.is_dir(follow_symlinks=False))
                for e, n in zip(entries, names, strict=True)
            ]
            entries = [e for e, k in zip(entries, keep, strict=True) if k]
            names = [n for n, k in zip(names, keep, strict=True) if k]
        bad: dict[str, tuple[str, str]] = {}
        if not plain:
            for n in names:
                if not is_utf8(n):
                    bad[_shown(n)] = ("invalid_name", f"name is not valid UTF-8: {_shown(n)!r}")
        # Names that differ only in case are two paths (SPEC 4.3); two spellings of one
        # NFC name (possible only when some name is not ASCII) are one path twice.
        if not plain and len(set(names)) != len(names):
            counts = Counter(names)
            for n in names:
                if counts[n] > 1 and _shown(n) not in bad:
                    same = sorted(
                        _label(e.name) for e, m in zip(entries, names, strict=True) if m == n
                    )
                    bad[_shown(n)] = (
                        "name_collision",
                        f"names differ only in Unicode normalisation: {', '.join(same)}",
                    )
        if bad:
            pairs = [(e, n) for e, n in zip(entries, names, strict=True) if _shown(n) not in bad]
            entries, names = [e for e, _ in pairs], [n for _, n in pairs]
        return Listing(fd, entries, names, bad, plain)

    def walk_targets(self, targets: set[str]) -> None:
        """Record each target from its parent's listing (so names are vetted as in a full
        walk), and the conflict copies of it beside it (whether they are still there says
        whether its conflict is over); directories among them go on the stack for their
        subtrees."""
        by_parent: dict[str, set[str]] = {}
        for path in targets:
            parent, _, name = path.rpartition("/")
            by_parent.setdefault(parent, set()).add(name)
        subdirs: dict[str, _Subdirs | None] = {}
        for parent in sorted(by_parent):
            disk = self.resolve_dir(parent, subdirs)
            if disk is _ABSENT:
                continue
            listing = self.list_dir(parent, disk)
            if listing is None:
                continue
            try:
                wanted = by_parent[parent]
                prefix = parent + "/" if parent else ""
                for name, (kind, message) in listing.bad.items():
                    if name in wanted:
                        self.problem(prefix + name, kind, message)
                pairs = [
                    (e, n)
                    for e, n in zip(listing.entries, listing.names, strict=True)
                    if n in wanted or _copy_of_any(n, wanted)
                ]
                self.record(prefix, disk, listing, [e for e, _ in pairs], [n for _, n in pairs])
            finally:
                os.close(listing.fd)

    def resolve_dir(self, rel: str, subdirs: dict[str, _Subdirs | None]) -> str | _Absent | None:
        """The on-disk name of directory `rel` (None if it is `rel` itself), or _ABSENT if
        it is not a trackable directory now: missing, ignored, a symlink, or unreadable
        (recorded as such). `subdirs` caches what each listed parent holds."""
        if not rel:
            return None
        parent, _, name = rel.rpartition("/")
        parent_disk = self.resolve_dir(parent, subdirs)
        if parent_disk is _ABSENT:
            return _ABSENT
        if parent not in subdirs:
            subdirs[parent] = self.list_subdirs(parent, parent_disk)
        found = subdirs[parent]
        if found is None:
            return _ABSENT
        if name in found.bad and rel not in self.unreadable:
            self.problem(rel, *found.bad[name])
        return found.disk.get(name, _ABSENT)

    def list_subdirs(self, rel: str, disk: str | None) -> _Subdirs | None:
        listing = self.list_dir(rel, disk)
        if listing is None:
            return None
        disk_prefix = disk + "/" if disk else (rel + "/" if rel else "")
        try:
            found = {
                n: None if disk is None and n == e.name else disk_prefix + e.name
                for e, n in zip(listing.entries, listing.names, strict=True)
                if e.is_dir(follow_symlinks=False)
            }
        finally:
            os.close(listing.fd)
        return _Subdirs(found, listing.bad)


def open_root(root: str) -> int:
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OfflineError(f"root {root} is offline: the folder is missing (unmounted?)") from None
    except NotADirectoryError:
        raise OfflineError(f"scanning {root}: not a directory") from None
    except OSError as e:
        raise OfflineError(f"scanning {root}: cannot open the folder: {e.strerror}") from None


_PARTS = "\0" + PART_PREFIX


def _without_parts(fd: int, entries: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    """`entries` without downloads in progress (`sync.partfiles`); the files among them
    that no download of this process is writing are removed: the walk runs under the
    root's lock, so another run that left them has died."""
    kept = []
    for e in entries:
        if not is_part(e.name):
            kept.append(e)
        elif is_leftover(e.name) and e.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(e.name, dir_fd=fd)
    return kept


def holds_nothing(root_fd: int) -> bool:
    """True if the root lists nothing but `.dropbear/` (and downloads in progress: no
    file, folder, link or anything else), or cannot be listed: what an unmounted or
    emptied root looks like."""
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError:
        return True
    try:
        with os.scandir(fd) as listing:
            return all(entry.name == LOCAL_DIR or is_part(entry.name) for entry in listing)
    except OSError:
        return True
    finally:
        os.close(fd)


def only_targets(only: Collection[str]) -> set[str] | None:
    """NFC relative paths, without any that lies under another; None means the whole root."""
    out = set()
    for raw in only:
        if raw.startswith("/"):
            raise ValueError(f"scan(only=...) takes paths relative to the root, got {raw!r}")
        parts = [p for p in unicodedata.normalize("NFC", raw).split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"scan(only=...) path escapes the root: {raw!r}")
        if not parts:
            return None
        out.add("/".join(parts))
    return {p for p in out if not _under_any(p, out)}


def _under_any(path: str, paths: set[str]) -> bool:
    """True if a folder above `path` is one of `paths` (looked up from the nearest)."""
    head, sep = path, "/"
    while sep:
        head, sep, _ = head.rpartition("/")
        if sep and head in paths:
            return True
    return False
