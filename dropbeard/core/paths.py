"""Which paths may appear in a manifest or tombstone, and their one normal form (pure)."""

from __future__ import annotations

import unicodedata

from dropbeard.core.errors import quoted

#: The local state directory at the top of every root: never synced, never a path.
LOCAL_DIR = ".dropbear"
MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255


def normalize_path(path: str) -> str:
    """`path` in NFC, the form manifests use (for local names; then `validate_path` it).

    Two local names that differ only in normalisation map to the same path: the scanner
    must report that as a collision rather than track both."""
    return unicodedata.normalize("NFC", path)


def validate_path(path: str) -> str:
    """`path` if it may appear in a manifest or tombstone, else ValueError with the reason.

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
