"""`.dropbearignore` matching behaves like git's `.gitignore`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropbeard.core.ignore import IgnoreRules

# (rules, path, is_dir, ignored) — each checked against `git check-ignore` semantics.
CASES = [
    ("*.log", "x.log", False, True),
    ("*.log", "deep/down/x.log", False, True),
    ("*.log", "x.logs", False, False),
    ("build/", "build", True, True),
    ("build/", "build", False, False),  # a dir-only pattern does not match a file
    ("build/", "src/build/out.o", False, True),
    ("/top.txt", "top.txt", False, True),
    ("/top.txt", "sub/top.txt", False, False),
    ("docs/*.md", "docs/a.md", False, True),
    ("docs/*.md", "docs/sub/a.md", False, False),  # `*` does not cross '/'
    ("docs/**/tmp", "docs/tmp", True, True),
    ("docs/**/tmp", "docs/a/b/tmp/f", False, True),
    ("**/cache/**", "x/cache/y/z", False, True),
    ("**/cache/**", "cache", True, False),  # `x/**` matches inside x, not x itself
    ("*.log\n!keep.log", "keep.log", False, False),
    ("*.log\n!keep.log", "a/keep.log", False, False),
    ("!keep.log\n*.log", "keep.log", False, True),  # the last match wins
    ("build/\n!build/keep.txt", "build/keep.txt", False, True),  # no re-include under it
    ("a/*\n!a/keep/", "a/keep/f", False, False),  # a itself was never excluded
    ("a/*\n!a/keep/", "a/other", False, True),
    ("d?r\n!b/", "b/dir/x", False, True),  # pathspec's GitIgnoreSpec gets this one wrong
    ("*\n!*/\n!*.txt", "a/b/c.txt", False, False),
    ("*\n!*/\n!*.txt", "a/b/c.bin", False, True),
    ("[a-c].txt", "b.txt", False, True),
    ("[!a-c].txt", "b.txt", False, False),
    ("[[:digit:]]*", "7up", False, True),
    ("\\!important", "!important", False, True),
    ("\\#hash", "#hash", False, True),
    ("# a comment", "# a comment", False, False),
    ("trailing   ", "trailing", False, True),
    ("space\\ ", "space ", False, True),
    ("f\\*", "f*", False, True),
    ("f\\*", "fx", False, False),
    ("[unterminated", "[unterminated", False, False),  # git drops such a pattern
]


@pytest.mark.parametrize(("rules", "path", "is_dir", "ignored"), CASES)
def test_matches_like_git(rules: str, path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules.parse(rules).matches(path, is_dir) is ignored


def test_empty_rules_ignore_nothing() -> None:
    for rules in (IgnoreRules.empty(), IgnoreRules.parse(""), IgnoreRules.parse("# only\n\n")):
        assert rules.is_empty
        assert not rules.matches("anything/at/all", False)


def test_fingerprint_tracks_patterns_not_formatting() -> None:
    base = IgnoreRules.parse("*.log\nbuild/\n")
    assert IgnoreRules.parse("# mine\r\n*.log\r\n\r\nbuild/").fingerprint == base.fingerprint
    assert IgnoreRules.parse("*.log\nbuild/\n!build/x\n").fingerprint != base.fingerprint
    assert IgnoreRules.parse("").fingerprint == IgnoreRules.empty().fingerprint
    assert IgnoreRules.parse("*.log\nbuild/") == base


def test_patterns_and_paths_compare_in_nfc() -> None:
    rules = IgnoreRules.parse("Cafe\u0301/\n")  # typed on macOS: NFD
    assert rules.matches("Caf\u00e9/menu.txt", False)


def test_decoding_the_ignore_file_reports_bytes_that_are_not_utf8() -> None:
    rules, error = IgnoreRules.decode("# café\n*.log\n".encode())
    assert error is None and rules == IgnoreRules.parse("*.log\n")

    # one Latin-1 byte in a comment: a problem, but the other rules still hold
    rules, error = IgnoreRules.decode(b"*.tmp\n# caf\xe9\n*.log\n")
    assert error == "line 2 is not valid UTF-8"
    assert rules.matches("x.log", False) and rules.matches("a/b.tmp", False)
    assert not rules.matches("x.txt", False)


# --- against git itself ---------------------------------------------------------------

NAMES = ["a", "b", "sub", "keep", "x.log", "f.txt", "tmp", "build", "dir", "7"]
PATTERNS = [
    "*.log", "!keep", "build/", "!build/keep", "a/**", "!a/keep", "/f.txt", "**/tmp",
    "sub/*", "!sub/keep/", "*", "!*/", "!*.txt", "d?r", "[ab]", "!b/", "x.log/", "**/sub/**",
    "a/**/keep", "[!a]*", "tmp", "!dir",
]  # fmt: skip


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join),
        min_size=1,
        max_size=12,
        unique=True,
    ),
    patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=6),
)
def test_agrees_with_git_ls_files(files: list[str], patterns: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        made = []
        for rel in files:
            path = Path(tmp, rel)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.is_dir():
                    path.touch()
                    made.append(rel)
            except (FileExistsError, NotADirectoryError):
                continue  # a file already holds a name this path needs as a folder
        Path(tmp, ".gitignore").write_text("\n".join(patterns) + "\n")
        env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        subprocess.run(["git", "init", "-q", tmp], check=True, env=env)
        out = subprocess.run(
            ["git", "-C", tmp, "ls-files", "-z", "--others", "--ignored", "--exclude-standard"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        git_ignored = {p for p in out.split("\0") if p and p != ".gitignore"}
        rules = IgnoreRules.parse("\n".join(patterns))
        assert {p for p in made if rules.matches(p, False)} == git_ignored
