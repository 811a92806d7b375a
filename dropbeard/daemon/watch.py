"""watchfiles adapter: a root's file events as root-relative NFC paths (IO: the watchfiles
Rust backend, run in worker threads so setting up watches on a big tree never blocks the
event loop).

Events under `.dropbear/` (the index, `tmp/`, the lock), on downloads in progress (named
by `sync.partfiles`, beside their destination) and on ignored paths are dropped. A
watcher error, an overflowing batch, a changed `.dropbearignore` or a restart (events may
have been missed) asks for a full rescan instead.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from pathlib import Path

import anyio
from watchfiles._rust_notify import RustNotify  # documented as watchfiles' raw backend

from dropbeard.core.ignore import IGNORE_FILE, IgnoreRules
from dropbeard.sync.partfiles import is_part
from dropbeard.sync.root import DOT

#: A batch this big is passed on as "rescan everything" rather than as a path list.
MAX_PATHS = 10_000
_GROUP_MS = 100  # watchfiles' own grouping; the daemon's Debouncer does the real batching
_STEP_MS = 50
_TIMEOUT_MS = 500  # how long a worker thread waits before checking back (bounds shutdown)
_DELETED = 3  # watchfiles.Change.deleted
ROOT_GONE = "the root folder itself went away (moved, deleted or unmounted?)"


class _Full:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def relative_path(root: str, path: str) -> str | None:
    """`path` relative to `root`, "/"-separated and NFC; "" for the root itself; None when
    it is outside the root, inside `.dropbear/` or a download in progress."""
    if path == root:
        return ""
    if not path.startswith(root.rstrip(os.sep) + os.sep):
        return None
    rel = path[len(root.rstrip(os.sep)) + 1 :]
    if os.sep != "/":
        rel = rel.replace(os.sep, "/")
    rel = unicodedata.normalize("NFC", rel)
    if rel == DOT or rel.startswith(DOT + "/") or is_part(rel.rpartition("/")[2]):
        return None
    return rel


def read_ignore_rules(root: Path) -> IgnoreRules:
    """The root's `.dropbearignore` as a pass reads it (as far as it decodes); no rules
    when it is missing or unreadable."""
    try:
        return IgnoreRules.decode((root / IGNORE_FILE).read_bytes())[0]
    except OSError:
        return IgnoreRules.empty()


class _Session:
    """One RustNotify watch of the root; every method runs in a worker thread."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():  # watchfiles would "watch" a missing path and report nothing
            raise FileNotFoundError(f"{root} is not a folder (missing or unmounted?)")
        self.root = root
        self.prefixes = sorted({str(root), os.path.realpath(root)}, key=len, reverse=True)
        self.rules = read_ignore_rules(root)
        self.notify = RustNotify([str(root)], False, False, 300, True, True)

    def next_batch(self, stop: anyio.Event) -> str | set[str] | _Full:
        raw = self.notify.watch(_GROUP_MS, _STEP_MS, _TIMEOUT_MS, stop)
        if isinstance(raw, str):
            return raw
        paths: set[str] = set()
        for change, path in raw:
            rel = next(
                (r for p in self.prefixes if (r := relative_path(p, path)) is not None), None
            )
            if rel is None:
                continue
            if rel == "":
                if change == _DELETED:
                    return _Full(ROOT_GONE)
                continue  # the root's own metadata: nothing to sync
            if rel == IGNORE_FILE:
                self.rules = read_ignore_rules(self.root)
                return _Full(f"{IGNORE_FILE} changed")
            if not self.rules.matches(rel, False):
                paths.add(rel)
        if len(paths) > MAX_PATHS:
            return _Full(f"{len(paths)} paths changed at once")
        return paths


class RootWatcher:
    """Watches one root until `close()`: `on_paths(paths)` for changed relative paths,
    `on_full(reason)` when only a full rescan can be trusted. Survives a missing root (it
    retries every `retry_s`) and restarts on `restart()` (e.g. after the root came back)."""

    def __init__(
        self,
        root: Path,
        *,
        on_paths: Callable[[set[str]], None],
        on_full: Callable[[str], None],
        retry_s: float,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self._on_paths = on_paths
        self._on_full = on_full
        self._on_error = on_error
        self._retry_s = retry_s
        self._closed = False
        self._stop = anyio.Event()
        self.watching = False

    def restart(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop for good; a worker thread notices within half a second."""
        self._closed = True
        self._stop.set()

    async def _pause(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._stop.wait()

    async def run(self) -> None:
        started_once = False
        while not self._closed:
            self._stop = anyio.Event()
            try:
                session = await anyio.to_thread.run_sync(_Session, self.root)
            except (OSError, RuntimeError) as exc:  # root missing or unwatchable
                if self._on_error is not None:
                    self._on_error(f"cannot watch {self.root}: {exc}")
                await self._pause(self._retry_s)
                continue
            self.watching = True
            try:
                if started_once:
                    self._on_full("the file watcher restarted; events may have been missed")
                started_once = True
                await self._follow(session)
            except (OSError, RuntimeError) as exc:
                self._on_full(f"the file watcher failed: {exc}")
                if self._on_error is not None:
                    self._on_error(f"watching {self.root} failed: {exc}")
                await self._pause(self._retry_s)
            finally:
                self.watching = False
                session.notify.close()

    async def _follow(self, session: _Session) -> None:
        stop = self._stop
        while not stop.is_set():
            batch = await anyio.to_thread.run_sync(session.next_batch, stop)
            if isinstance(batch, _Full):
                self._on_full(batch.reason)
                if batch.reason == ROOT_GONE:
                    await self._pause(self._retry_s)  # then watch it afresh
                    return
            elif isinstance(batch, set):
                if batch:
                    self._on_paths(batch)
            elif batch in ("stop", "signal"):
                return
