"""A root on disk: its `.dropbear/` paths, the online/offline identity check, the per-root
lock (IO: local files).

A root is online only if `.dropbear/root.toml` exists and parses, and its `root_id` and
`device_id` match what `state.sqlite` recorded at `init`. Anything else is offline: the
caller reads and writes nothing, and exits 3.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec

from dropbeard.core.config import RootConfig, parse_root_config
from dropbeard.core.errors import DropbeardError, OfflineError, UsageError
from dropbeard.core.ignore import IGNORE_FILE
from dropbeard.sync.state import State
from dropbeard.sync.stateschema import StateError

DOT = ".dropbear"


class RootPaths(msgspec.Struct, frozen=True):
    """Where everything of one root lives."""

    root: Path

    @property
    def dot(self) -> Path:
        return self.root / DOT

    @property
    def config(self) -> Path:
        return self.dot / "root.toml"

    @property
    def state(self) -> Path:
        return self.dot / "state.sqlite"

    @property
    def tmp(self) -> Path:
        return self.dot / "tmp"

    @property
    def cache(self) -> Path:
        """What history and gc read, kept to be read again (`history_trees`, `log_cache`)."""
        return self.dot / "cache"

    @property
    def trees(self) -> Path:
        """The pass's own node cache, `.dropbear/trees/` (SPEC 2; `sync.treecache`)."""
        return self.dot / "trees"

    @property
    def history_trees(self) -> Path:
        """Nodes read from history (old snapshots): apart from the pass's own node cache,
        whose record of when a node was seen in the bucket a writer relies on (SPEC 8.2)."""
        return self.cache / "history-trees"

    @property
    def log_cache(self) -> Path:
        """Snapshot objects and tombstone batches read, laid out as `devices/` is."""
        return self.cache / "log"

    @property
    def lock(self) -> Path:
        return self.dot / "lock"

    @property
    def ignore_file(self) -> Path:
        return self.root / IGNORE_FILE


def find_root(start: Path) -> Path:
    """The root containing `start` (itself or the nearest parent holding `.dropbear/`);
    `start` itself when none does (it is then reported offline)."""
    found = enclosing_root(start)
    return start.absolute() if found is None else found


def enclosing_root(start: Path) -> Path | None:
    """The root containing `start` (itself or the nearest parent holding `.dropbear/`), or
    None when `start` is inside no root."""
    start = start.absolute()
    for candidate in (start, *start.parents):
        if (candidate / DOT).is_dir():
            return candidate
    return None


def load_identity(paths: RootPaths) -> RootConfig:
    """Parse root.toml, or raise OfflineError saying why the root is offline."""
    if not paths.root.is_dir():
        raise OfflineError(f"root {paths.root} is offline: the folder is missing (unmounted?)")
    try:
        text = paths.config.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OfflineError(
            f"root {paths.root} is offline: {paths.config} is missing "
            "(not initialised here, or the drive is not mounted)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OfflineError(
            f"root {paths.root} is offline: cannot read {paths.config}: {exc}"
        ) from None
    try:
        return parse_root_config(text, str(paths.config))
    except UsageError as exc:
        raise OfflineError(f"root {paths.root} is offline: {exc}") from None


def open_online(paths: RootPaths, expected_root_id: str | None = None) -> tuple[RootConfig, State]:
    """The identity check of SPEC 2: returns the config and the opened index, or raises
    OfflineError (nothing has been read from or written to the bucket)."""
    cfg = load_identity(paths)
    if not paths.state.exists():
        raise OfflineError(f"root {paths.root} is offline: {paths.state} is missing")
    try:
        state = State.open(paths.state)
    except StateError as exc:
        raise OfflineError(f"root {paths.root} is offline: {exc}") from None
    recorded = (state.get_meta("root_id"), state.get_meta("device_id"))
    if recorded != (cfg.root_id, cfg.device_id):
        state.close()
        raise OfflineError(
            f"root {paths.root} is offline: root.toml says root {cfg.root_id!r} device "
            f"{cfg.device_id!r} but the local index belongs to root {recorded[0]!r} device "
            f"{recorded[1]!r}"
        )
    if expected_root_id is not None and expected_root_id != cfg.root_id:
        state.close()
        raise OfflineError(
            f"root {paths.root} is offline: expected root {expected_root_id!r}, "
            f"found {cfg.root_id!r}"
        )
    return cfg, state


class Busy(DropbeardError):
    """Another process holds the root's lock."""


@contextlib.contextmanager
def root_lock(paths: RootPaths) -> Iterator[None]:
    """Hold `.dropbear/lock` exclusively for the duration (a one-shot sync or a daemon pass).
    A second process fails at once with a clear message instead of waiting forever."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _read_pid(fd)
            raise Busy(
                f"root {paths.root} is busy: another dropbeard{holder} is syncing it; "
                "try again when it finishes"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        data = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {data})" if data.isdigit() else ""


def reset_tmp(paths: RootPaths) -> None:
    """Empty `.dropbear/tmp/` (partial downloads of a previous run). Never creates
    `.dropbear/` itself: a root unmounted since its identity check is offline, not an
    empty folder to sync against."""
    shutil.rmtree(paths.tmp, ignore_errors=True)
    try:
        paths.tmp.mkdir(exist_ok=True)
    except (FileNotFoundError, NotADirectoryError):
        missing = "the folder is missing (unmounted?)"
        raise OfflineError(f"root {paths.root} is offline: {missing}") from None
