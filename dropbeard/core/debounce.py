"""Batches file-change events into passes by quiet period and maximum delay (pure; time passed in).

A batch is due `quiet` seconds after its last event or `max_delay` seconds after its first,
whichever comes first, so a folder that never stops changing is still synced every
`max_delay`. All pending paths form one batch.

Coalescing: a path added twice is one entry, and a path below another pending path is
dropped in favour of it. A returned path therefore stands for itself *and everything below
it*; the pass must rescan a directory's subtree anyway (moving a folder in is reported as
one event on the folder). Paths are "/"-separated, absolute or root-relative; a trailing
"/" is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import msgspec


class Batch(msgspec.Struct, frozen=True):
    """What a pass should rescan. `full` means the whole root (the watcher lost events);
    `paths` then only tells what was seen. A batch with neither is empty and falsy."""

    paths: frozenset[str] = frozenset()
    full: bool = False

    def __bool__(self) -> bool:
        return self.full or bool(self.paths)


EMPTY = Batch()


class Debouncer:
    """Collects paths with `add`, hands them out with `due` once their batch is due."""

    def __init__(self, quiet: float, max_delay: float) -> None:
        for name, value in (("quiet", quiet), ("max_delay", max_delay)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")
        self.quiet = quiet
        self.max_delay = max_delay
        self._paths: set[str] = set()
        self._full = False
        self._first: float | None = None  # time of the batch's first event; None: no batch
        self._last = 0.0
        self._coalesced: frozenset[str] | None = frozenset()  # None: recompute

    def add(self, paths: Iterable[str], now: float) -> None:
        """Record change events on `paths` at time `now`. No paths, no event."""
        added = [_normalized(path) for path in paths]
        if added:
            self._paths.update(added)
            self._coalesced = None
            self._event(now)

    def add_full_rescan(self, now: float) -> None:
        """Record that the whole root must be rescanned (the watcher overflowed)."""
        self._full = True
        self._event(now)

    def _event(self, now: float) -> None:
        if self._first is None:
            self._first = self._last = now
        else:
            self._first = min(self._first, now)
            self._last = max(self._last, now)

    def next_deadline(self) -> float | None:
        """When the pending batch becomes due; None when nothing is pending."""
        if self._first is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def due(self, now: float) -> Batch:
        """The pending batch if it is due at `now` (and forget it), else an empty Batch."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return EMPTY
        return self.flush()

    def flush(self) -> Batch:
        """The pending batch whether due or not (e.g. "sync now" or shutdown), forgotten."""
        batch = Batch(self.pending_paths(), self._full)
        self._paths.clear()
        self._full = False
        self._first = None
        self._coalesced = frozenset()
        return batch

    @property
    def pending(self) -> int:
        """How many (coalesced) paths are waiting."""
        return len(self.pending_paths())

    @property
    def full_rescan_pending(self) -> bool:
        return self._full

    def pending_paths(self) -> frozenset[str]:
        """The waiting paths, coalesced (none below another)."""
        if self._coalesced is None:
            paths = self._paths
            self._coalesced = frozenset(
                path for path in paths if not any(up in paths for up in _ancestors(path))
            )
        return self._coalesced


def _normalized(path: str) -> str:
    return path.rstrip("/") or path[:1]


def _ancestors(path: str) -> Iterator[str]:
    """Proper ancestors of `path`: "/a/b/c" → "/", "/a", "/a/b"; "a/b" → "a"."""
    if path.startswith("/") and path != "/":
        yield "/"
    start = 1
    while (cut := path.find("/", start)) != -1:
        yield path[:cut]
        start = cut + 1
