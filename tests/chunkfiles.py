"""Test data for chunking: deterministic bytes that look random to FastCDC, made fast
(SHAKE-128 as a byte stream: ~0.1 s for 48 MiB), and edits of them."""

from __future__ import annotations

import hashlib

MiB = 1 << 20


def noise(seed: str, size: int) -> bytes:
    """`size` bytes, the same for the same seed on every machine and every run."""
    return hashlib.shake_128(seed.encode()).digest(size)


def repeated(seed: str, block: int, size: int) -> bytes:
    """A block of noise repeated to `size` bytes (equal stretches make equal chunks)."""
    unit = noise(seed, block)
    return (unit * (size // block + 1))[:size]


def overwrite(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def sha(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()
