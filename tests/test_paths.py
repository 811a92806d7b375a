"""Which paths a tree or tombstone may name, and their normal form (SPEC 1)."""

from __future__ import annotations

import unicodedata

import pytest

from dropbeard.core.paths import case_clashes, normalize_path, validate_path


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


# --- what a filesystem that ignores case cannot hold apart (SPEC 4.3) -----------------


@pytest.mark.parametrize(
    ("present", "arriving", "clashes"),
    [
        pytest.param([], ["a.txt", "b.txt"], {}, id="different_names"),
        pytest.param(["a.txt"], ["a.txt"], {}, id="a_path_replacing_itself"),
        pytest.param([], ["a.txt", "A.txt"], {"a.txt": "A.txt"}, id="twins_arriving_together"),
        pytest.param(["a.txt"], ["A.txt"], {"A.txt": "a.txt"}, id="what_is_on_disk_stays"),
        pytest.param(["docs", "docs/x"], ["Docs/y"], {"Docs/y": "docs"}, id="a_folder_on_the_way"),
        pytest.param([], ["D/x", "d/y"], {"d/y": "D"}, id="folders_arriving_together"),
        pytest.param(
            ["\u00c9t\u00e9"], ["\u00e9t\u00e9"], {"\u00e9t\u00e9": "\u00c9t\u00e9"}, id="non_ascii"
        ),
        pytest.param(["x/A.txt"], ["a.txt", "y/a.txt"], {}, id="other_folders_do_not_count"),
    ],
)
def test_case_clashes(present: list[str], arriving: list[str], clashes: dict[str, str]) -> None:
    assert case_clashes(present, arriving) == clashes
