"""Sizes and times as a person reads them (pure)."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """`1234567` -> `1.2 MB` (decimal units, as disks and networks count)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover (the loop returns)
