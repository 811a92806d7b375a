"""What a person sees on a terminal while a pass runs: one progress line per stage
(done/total files and bytes, percent, rate, ETA, the current file), drawn with rich on
stderr and only when stderr is a terminal; notices printed above it (IO: stderr).

rich is imported only when stderr may be a terminal: a sync whose stderr is a pipe or a
log file (a script, a benchmark, a service) does not pay for importing it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from dropbeard.core.units import human_bytes
from dropbeard.sync.meter import PassMeter, Stage, Transfer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["ProgressDisplay", "human_bytes", "say"]

#: A pass shorter than this shows no progress at all (no flicker for an idle sync).
SHOW_AFTER_S = 0.4

_current: ProgressDisplay | None = None


def say(line: str) -> None:
    """A notice for the person on stderr, above the progress line if one is drawn."""
    if _current is not None and _current.progress is not None:
        _current.console.print(line, markup=False, highlight=False)
    else:
        print(line, file=sys.stderr, flush=True)


class ProgressDisplay:
    """A `MeterListener` drawing the meter's stages with rich.progress; use as a context
    manager around the pass. `for_stderr()` is None when stderr is not a terminal: a
    pipe or a log file never receives progress."""

    def __init__(self, console: Console, *, clock: Any = time.monotonic) -> None:
        self.console = console
        self.meter = PassMeter(listener=self)
        self.progress: Progress | None = None
        self._clock = clock
        self._began = clock()
        self._task: TaskID | None = None
        self._stage: Stage | None = None

    @classmethod
    def for_stderr(cls) -> ProgressDisplay | None:
        if not _may_be_terminal():
            return None
        from rich.console import Console

        console = Console(stderr=True)
        return cls(console) if console.is_terminal else None

    def __enter__(self) -> ProgressDisplay:
        global _current
        _current = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _current
        _current = None
        if self.progress is not None:
            self.progress.stop()

    def _start(self) -> Progress:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.table import Column

        fixed = Column(no_wrap=True)  # on a narrow terminal the file name is cut, nothing wraps
        bar = [BarColumn(bar_width=12, table_column=fixed)] if self.console.width >= 100 else []
        progress = Progress(
            TextColumn("{task.description}", table_column=fixed),
            *bar,
            TaskProgressColumn(table_column=fixed),
            DownloadColumn(table_column=fixed),
            TextColumn("{task.fields[files]}", table_column=fixed),
            TransferSpeedColumn(table_column=fixed),
            TextColumn("ETA {task.fields[eta]}", table_column=fixed),
            TextColumn(
                "{task.fields[current]}",
                table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1, min_width=8),
            ),
            console=self.console,
            transient=True,
            refresh_per_second=8,
        )
        progress.start()
        self.progress = progress
        return progress

    # -- MeterListener ------------------------------------------------------------------

    def changed(self, stage: Stage) -> None:
        progress = self.progress
        if progress is None:
            if self._clock() - self._began < SHOW_AFTER_S:
                return
            progress = self._start()
        files = f"{stage.files_done:,}" + (
            f"/{stage.files_total:,} files" if stage.files_total is not None else " files"
        )
        current = stage.current or ""
        eta = _clock_time(stage.eta(self.meter.clock()))
        if stage is self._stage and self._task is not None:
            progress.update(
                self._task,
                total=stage.bytes_total,
                completed=stage.bytes_done,
                files=files,
                current=current,
                eta=eta,
            )
            return
        if self._task is not None:
            progress.remove_task(self._task)
        self._stage = stage
        self._task = progress.add_task(
            stage.name,
            total=stage.bytes_total,
            completed=stage.bytes_done,
            files=files,
            current=current,
            eta=eta,
        )

    def ended(self) -> None:
        """Between stages: nothing to show."""
        if self.progress is not None and self._task is not None:
            self.progress.remove_task(self._task)
        self._task = self._stage = None

    def transfer_ended(self, transfer: Transfer, error: BaseException | None) -> None:
        pass  # each path is reported once the pass has settled it


def _clock_time(seconds: float | None) -> str:
    """`seconds` as H:MM:SS, or -:--:-- when not known yet."""
    if seconds is None:
        return "-:--:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _may_be_terminal() -> bool:
    """False only where rich's `Console(stderr=True).is_terminal` is False too: stderr is
    not a TTY and neither FORCE_COLOR nor TTY_COMPATIBLE=1 makes rich treat it as one."""
    if "FORCE_COLOR" in os.environ or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
