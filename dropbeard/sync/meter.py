"""What a running pass is doing, for a progress display and the daemon's status: the
current stage (hashing, downloading, uploading) with files and bytes done of the total,
its rate and ETA, the current file, and the transfers in flight, each named by its path
(no IO; the clock is injectable).

The pass feeds it: the scan its hashing counts, `MeteredStore` every blob transfer, the
pipeline the totals of each stage. Everything happens on the event loop's thread, except
that a display may read `view()` from its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from dropbeard.core.errors import PreconditionFailed

StageName = Literal["hashing", "downloading", "uploading"]
Direction = Literal["upload", "download"]

#: A stage tells its ETA once it has moved this share of its bytes or run this long:
#: before, the rate of its first small file says nothing of the rest (a stage 0.0 of
#: 16.8 MB in showed "ETA 2:02:26").
ETA_AFTER_SHARE = 0.01
ETA_AFTER_S = 2.0


class Stage(msgspec.Struct):
    """One stage of a pass. Totals are None while unknown (the walk is not over)."""

    name: StageName
    files_total: int | None
    bytes_total: int | None
    started: float
    files_done: int = 0
    bytes_done: int = 0
    current: str | None = None

    def view(self, now: float) -> dict[str, Any]:
        """Done and total, percent (of bytes, else files), rate (bytes/s) and ETA (s)."""
        elapsed = max(now - self.started, 1e-6)
        rate = self.bytes_done / elapsed
        percent = None
        eta = self.eta(now)
        if self.bytes_total:
            percent = min(100.0, 100.0 * self.bytes_done / self.bytes_total)
        elif self.files_total:
            percent = min(100.0, 100.0 * self.files_done / self.files_total)
        return {
            "stage": self.name,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "percent": None if percent is None else round(percent, 1),
            "rate_bytes_per_s": round(rate),
            "eta_s": None if eta is None else round(eta, 1),
            "current": self.current,
            "seconds": round(elapsed, 3),
        }

    def eta(self, now: float) -> float | None:
        """Seconds left at the stage's rate so far; None while that rate says too little
        (`ETA_AFTER_SHARE`, `ETA_AFTER_S`) or nothing is known of its bytes."""
        done, total = self.bytes_done, self.bytes_total
        elapsed = now - self.started
        if not total or done <= 0 or (done < ETA_AFTER_SHARE * total and elapsed < ETA_AFTER_S):
            return None
        return max(0.0, (total - done) * elapsed / done)


class Transfer(msgspec.Struct):
    """One blob on its way: `path` is the file it is for (its key when no path is known)."""

    key: str
    path: str
    direction: Direction
    total: int | None
    started: float
    done: int = 0

    def view(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self.started, 1e-6)
        return {
            "direction": self.direction,
            "path": self.path,
            "bytes_done": self.done,
            "bytes_total": self.total,
            "rate_bytes_per_s": round(self.done / elapsed),
            "seconds": round(elapsed, 3),
        }


class MeterListener(Protocol):
    """Told of every change (a display redraws, throttled as it likes) and of every
    transfer that ended (`error` None: it succeeded)."""

    def changed(self, stage: Stage) -> None: ...

    def ended(self) -> None: ...

    def transfer_ended(self, transfer: Transfer, error: BaseException | None) -> None: ...


@dataclass  # not a Struct: tests extend it with their own __init__
class PassMeter:
    listener: MeterListener | None = None
    clock: Callable[[], float] = time.monotonic
    stage: Stage | None = None
    _names: dict[str, tuple[str, int]] = field(default_factory=dict)
    _active: dict[int, Transfer] = field(default_factory=dict)

    # -- stages -----------------------------------------------------------------------

    def begin(self, name: StageName, files: int | None, nbytes: int | None) -> Stage | None:
        """Start stage `name` (ending the one before) with its totals, if known; with
        nothing to do (no file), only end the one before."""
        if files == 0:
            self.end()
            return None
        self.stage = Stage(name, files, nbytes, self.clock())
        self._changed()
        return self.stage

    def end(self) -> None:
        """No stage runs (the last one ended, or the next has nothing to do)."""
        self.stage = None
        if self.listener is not None:
            self.listener.ended()

    def hashing(
        self, files: tuple[int, int | None], nbytes: tuple[int, int | None], current: str | None
    ) -> None:
        """The scan's counts: (done, total) files and bytes to hash, the file being read."""
        stage = self.stage
        if stage is None or stage.name != "hashing":
            stage = self.stage = Stage("hashing", None, None, self.clock())
        stage.files_done, stage.files_total = files
        stage.bytes_done, stage.bytes_total = nbytes
        stage.current = current
        self._changed()

    def name_blobs(self, named: Iterable[tuple[str, str, int]]) -> None:
        """Which path each blob (sha256, path, size) is transferred for."""
        self._names.update((sha, (path, size)) for sha, path, size in named)

    def _counting(self) -> Stage | None:
        """The stage transfers count into: the current one, but not the scan's hashing,
        whose counts are the scan's (a first sync sends files meanwhile, `sync.ahead`;
        they show as transfers in flight)."""
        stage = self.stage
        return None if stage is None or stage.name == "hashing" else stage

    def _changed(self) -> None:
        if self.listener is not None and self.stage is not None:
            self.listener.changed(self.stage)

    # -- transfers (from MeteredStore) -------------------------------------------------

    def transfer_started(self, key: str, direction: Direction, total: int | None) -> Transfer:
        """A transfer of blob `key` began; `total` is its size when the caller knows it,
        else the size of the file it was named for."""
        path, size = self._names.get(key.rsplit("/", 1)[-1], (key, None))
        transfer = Transfer(key, path, direction, size if total is None else total, self.clock())
        self._active[id(transfer)] = transfer
        if (stage := self._counting()) is not None:
            stage.current = transfer.path
            self._changed()
        return transfer

    def transfer_moved(self, transfer: Transfer, n: int) -> None:
        transfer.done += n
        if (stage := self._counting()) is not None:
            stage.bytes_done += n
            self._changed()

    def transfer_ended(self, transfer: Transfer, error: BaseException | None) -> None:
        self._active.pop(id(transfer), None)
        done = error is None or isinstance(error, PreconditionFailed)  # there already: done
        if done and (stage := self._counting()) is not None:
            stage.files_done += 1
            self._changed()
        if self.listener is not None:
            self.listener.transfer_ended(transfer, error)

    # -- reading --------------------------------------------------------------------------

    def view(self) -> dict[str, Any] | None:
        """The current stage as `Stage.view`, None between stages."""
        stage = self.stage
        return None if stage is None else stage.view(self.clock())

    def in_flight(self) -> list[dict[str, Any]]:
        now = self.clock()
        active = sorted(self._active.values(), key=lambda t: t.started)
        return [t.view(now) for t in active]
