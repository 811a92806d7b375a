"""Which paths may appear in a tree or tombstone, their one normal form, and which
of them a case-insensitive filesystem cannot hold apart (pure)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from dropbeard.core.errors import quoted

#: The local state directory at the top of every root: never synced, never a path.
LOCAL_DIR = ".dropbear"
MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255


def normalize_path(path: str) -> str:
    """`path` in NFC, the form trees use (for local names; then `validate_path` it).

    Two local names that differ only in normalisation map to the same path: the scanner
    must report that as a collision rather than track both."""
    return unicodedata.normalize("NFC", path)


def validate_path(path: str) -> str:
    """`path` if it may appear in a tree or tombstone, else ValueError with the reason.

    Valid: relative, `/`-separated, NFC-normalised, valid UTF-8, at most 4096 bytes and
    255 bytes per segment, no empty, `.` or `..` segment, no NUL, and not `.dropbear` or
    under it (compared case-insensitively: on a case-insensitive disk `.DropBear/` is
    the state directory). A backslash is an ordinary character, as on POSIX; so are
    other control characters such as newline.
    """
    if not path:
        raise ValueError("path is empty")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"path {quoted(path)} is not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise ValueError(f"path {quoted(path)} is longer than {MAX_PATH_BYTES} bytes")
    if "\x00" in path:
        raise ValueError(f"path {quoted(path)} contains NUL")
    if path.startswith("/"):
        raise ValueError(f"path {quoted(path)} is absolute")
    if path.endswith("/"):
        raise ValueError(f"path {quoted(path)} ends with '/'")
    if not unicodedata.is_normalized("NFC", path):
        raise ValueError(f"path {quoted(path)} is not NFC-normalised")
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            what = "an empty" if not segment else f"a {segment!r}"
            raise ValueError(f"path {quoted(path)} has {what} segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValueError(
                f"path {quoted(path)} has a name longer than {MAX_SEGMENT_BYTES} bytes"
            )
    if segments[0].casefold() == LOCAL_DIR:
        raise ValueError(f"path {quoted(path)} is dropbeard's own {LOCAL_DIR}/")
    return path


def case_clashes(present: Iterable[str], arriving: Iterable[str]) -> dict[str, str]:
    """The paths among `arriving` that a filesystem ignoring case cannot create, each
    with the path it cannot be told apart from: its name, or a folder's name on its way,
    differs only in case from a path `present` (staying on disk) or from another
    arriving path (SPEC 4.3). What is present keeps its name; among arriving paths, the
    first in sorted order does. Paths are NFC."""
    wanted = sorted(set(arriving))
    if not wanted:
        return {}
    folders = {_parent(_fold(p)) for path in wanted for p in _prefixes(path)}
    holders: dict[str, str] = {}
    for path in present:
        folded = _fold(path)
        if _parent(folded) in folders:
            holders.setdefault(folded, path)
    clashes: dict[str, str] = {}
    for path in wanted:
        for prefix in _prefixes(path):
            holder = holders.setdefault(_fold(prefix), prefix)
            if holder != prefix:
                clashes[path] = holder
                break
    return clashes


def _fold(path: str) -> str:
    return path.lower() if path.isascii() else unicodedata.normalize("NFC", path.casefold())


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _prefixes(path: str) -> list[str]:
    """`a`, `a/b`, `a/b/c` for `a/b/c`: the path and every folder on its way."""
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
