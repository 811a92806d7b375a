"""Large files in content-defined chunks (SPEC 1.6): the parameters every device cuts
with, which files are chunked, and checking a chunk list against its file (pure).

Every device must cut the same way, or equal bytes stop making equal chunks (nothing
breaks, but nothing deduplicates either): FastCDC, 2020 variant, as implemented by
fastcdc-rs 4.x and by `pyfastcdc` (pinned in pyproject.toml), with the parameters below
and that library's default gear table (seed 0) and normalization level 1. (PyPI's
`fastcdc` is another variant, fastcdc-rs's `ronomon`: it cuts elsewhere.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from dropbeard.core.ids import validate_sha256

MiB = 1 << 20

#: FastCDC 2020 parameters (SPEC 1.6). A cut is never made before MIN_CHUNK bytes, the
#: expected cut lies near AVG_CHUNK past it, and MAX_CHUNK forces one.
MIN_CHUNK = 1 * MiB
AVG_CHUNK = 4 * MiB
MAX_CHUNK = 16 * MiB
#: FastCDC's normalized chunking level and gear seed; changing either changes every cut.
NORMALIZATION: Final = 1
GEAR_SEED: Final = 0

#: A file of more than this many bytes is stored in chunks; one of this size or less is
#: one blob keyed by its own SHA-256.
CHUNKED_ABOVE = 16 * MiB


class Chunk(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One chunk of a large file: the key of its blob and its length in bytes. Encodes
    as SPEC 1.6's `["<sha256>", <size>]`."""

    sha256: str
    size: int


def is_chunked(size: int) -> bool:
    """True if a file of `size` bytes is stored in chunks rather than as one blob."""
    return size > CHUNKED_ABOVE


def validate_chunks(chunks: Iterable[Chunk], size: int) -> tuple[Chunk, ...]:
    """`chunks` as a tuple if it is a valid chunk list for a file of `size` bytes, else
    ValueError saying what is wrong.

    Valid: at least one chunk, every digest lowercase hex SHA-256, every chunk 1 to
    MAX_CHUNK bytes (a digest repeated, the same number each time), and the sizes add up
    to `size`. Boundaries are not checked against FastCDC, nor is the file's size: a
    writer that cut differently, or cut a file of 16 MiB or less, still wrote a readable
    file, since a reader needs only the list (SPEC 1.6). MAX_CHUNK is enforced because
    readers hold a chunk in memory.
    """
    out = tuple(chunks)
    total = 0
    sizes: dict[str, int] = {}
    for i, chunk in enumerate(out):
        try:
            validate_sha256(chunk.sha256)
        except ValueError as e:
            raise ValueError(f"chunk {i}: {e}") from None
        if not 0 < chunk.size <= MAX_CHUNK:
            raise ValueError(f"chunk {i} has {chunk.size} bytes (1 to {MAX_CHUNK} allowed)")
        if sizes.setdefault(chunk.sha256, chunk.size) != chunk.size:
            raise ValueError(f"chunk {i} repeats an earlier chunk's digest with another size")
        total += chunk.size
    if total != size:
        raise ValueError(f"chunks add up to {total} bytes, the file has {size}")
    if not out:
        raise ValueError("a chunk list names no chunk")
    return out


def chunk_offsets(chunks: Iterable[Chunk]) -> list[int]:
    """Where each chunk starts in the file, in the list's order."""
    offsets: list[int] = []
    at = 0
    for chunk in chunks:
        offsets.append(at)
        at += chunk.size
    return offsets
