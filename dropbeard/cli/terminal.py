"""Terminal output helpers: a throttled one-line progress meter and byte formatting (IO:
stderr)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class ProgressLine:
    """Bytes transferred and the rate, redrawn at most 4 times a second on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._done = 0
        self._began = time.monotonic()
        self._drawn = 0.0
        self._shown = False

    @classmethod
    def for_stderr(cls) -> ProgressLine | None:
        return cls(sys.stderr) if sys.stderr.isatty() else None

    def add(self, n: int) -> None:
        self._done += n
        now = time.monotonic()
        if now - self._drawn >= 0.25 and now - self._began > 1.0:
            self._drawn = now
            rate = self._done / max(now - self._began, 1e-6)
            self._out.write(f"\r  {human_bytes(self._done)} transferred, {human_bytes(rate)}/s   ")
            self._out.flush()
            self._shown = True

    def close(self) -> None:
        if self._shown:
            self._out.write("\r" + " " * 60 + "\r")
            self._out.flush()
