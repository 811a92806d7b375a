"""Which paths a manifest may hold, and their normal form (SPEC 1)."""

from __future__ import annotations

import unicodedata

import pytest

from dropbeard.core.paths import normalize_path, validate_path


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "docs/a.md",
        ".dropbearignore",
        "sub/.dropbear/x",  # only the root's own .dropbear/ is reserved
        "back\\slash",
        "new\nline",
        "été/文件.txt",
        "..a/b..",
        "x" * 255,
        "/".join(["x" * 255] * 16),
    ],
)
def test_valid_paths(path: str) -> None:
    assert validate_path(path) == path


def test_normalize_path_gives_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "café/é.txt")
    with pytest.raises(ValueError, match="NFC"):
        validate_path(nfd)
    assert validate_path(normalize_path(nfd)) == "café/é.txt"


def test_path_with_lone_surrogate_is_invalid() -> None:
    # os.fsdecode of a name that is not UTF-8 gives surrogate escapes.
    with pytest.raises(ValueError, match="UTF-8"):
        validate_path("bad\udcff.txt")
