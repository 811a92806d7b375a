""".dropbearignore matching: gitignore-syntax rules over '/'-separated relative paths (pure).

Semantics are git's: a path is judged by the last pattern that matches the path itself, and
once a directory is excluded nothing below it can be re-included. pathspec's GitIgnoreSpec
was tried first but lets a directory pattern's verdict leak onto everything below it (with
`d?r` then `!b/`, it keeps `b/dir/x` although git ignores it), so patterns are translated
to regular expressions here, following git's wildmatch, and checked against git in tests.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping

import msgspec

from dropbeard.core.model import Entry

IGNORE_FILE = ".dropbearignore"
"""The ignore file, at the top of a root (an ordinary, synced file)."""

_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


class _Unmatchable(ValueError):
    """The pattern can never match (git's wildmatch aborts on it), so it is dropped."""


class _Pattern(msgspec.Struct, frozen=True):
    regex: str  # matches a whole relative path, no anchors
    negated: bool
    dir_only: bool


class IgnoreRules:
    """Compiled ignore rules; safe to share between threads.

    `fingerprint` is the SHA-256 of the pattern lines with comments, blank lines and line
    endings removed, so the engine can tell when the rules really changed.
    """

    __slots__ = ("_dir_cache", "_dir_rx", "_file_rx", "_negated", "fingerprint", "lines")

    def __init__(self, lines: tuple[str, ...]) -> None:
        self.lines = lines
        self.fingerprint = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
        patterns = [p for p in map(_compile_line, lines) if p is not None]
        self._negated = [p.negated for p in patterns]
        self._file_rx = _combine(patterns, dirs=False)
        self._dir_rx = _combine(patterns, dirs=True)
        self._dir_cache: dict[str, bool] = {}

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        """Rules from the text of a `.dropbearignore`, NFC-normalised like the paths."""
        lines = []
        for raw in unicodedata.normalize("NFC", text).splitlines():
            line = raw.rstrip("\r")
            if line.strip() and not line.startswith("#"):
                lines.append(line)
        return cls(tuple(lines))

    @classmethod
    def decode(cls, data: bytes) -> tuple[IgnoreRules, str | None]:
        """Rules from the bytes of a `.dropbearignore`, and why they cannot be trusted
        (None if they can). Bytes that are not UTF-8 make the file a problem; the rules
        are then read with those bytes replaced, so one bad byte in a comment does not
        switch every other rule off."""
        try:
            return cls.parse(data.decode("utf-8")), None
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            rules = cls.parse(data.decode("utf-8", "replace"))
            return rules, f"line {line} is not valid UTF-8"

    @classmethod
    def empty(cls) -> IgnoreRules:
        return cls(())

    @property
    def is_empty(self) -> bool:
        return self._dir_rx is None

    def matches(self, path: str, is_dir: bool) -> bool:
        """True if `path` (relative, '/'-separated, NFC) is ignored, itself or because an
        ancestor directory is."""
        if self._dir_rx is None:
            return False
        cut = path.find("/")
        while cut != -1:
            if self._dir_excluded(path[:cut]):
                return True
            cut = path.find("/", cut + 1)
        return self.matches_here(path, is_dir)

    def matches_here(self, path: str, is_dir: bool) -> bool:
        """Like `matches`, for a caller that knows no ancestor of `path` is ignored (a
        top-down walk that never enters an ignored directory)."""
        if is_dir:
            return self._dir_excluded(path)
        return self._verdict(self._file_rx, path)

    def _dir_excluded(self, path: str) -> bool:
        verdict = self._dir_cache.get(path)
        if verdict is None:
            verdict = self._dir_cache[path] = self._verdict(self._dir_rx, path)
        return verdict

    def _verdict(self, rx: re.Pattern[str] | None, path: str) -> bool:
        if rx is None:
            return False
        m = rx.match(path)
        if m is None or m.lastgroup is None:
            return False
        return not self._negated[int(m.lastgroup[1:])]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IgnoreRules):
            return NotImplemented
        return self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"IgnoreRules({len(self.lines)} lines, {self.fingerprint[:12]})"


def _combine(patterns: list[_Pattern], *, dirs: bool) -> re.Pattern[str] | None:
    """One regex trying the patterns last-first: the alternative that matches, found via
    `lastgroup`, is the last pattern in the file that matches the path itself."""
    alts = [
        f"(?P<p{i}>{p.regex})"
        for i, p in reversed(list(enumerate(patterns)))
        if dirs or not p.dir_only
    ]
    if not alts:
        return None
    return re.compile("(?:" + "|".join(alts) + r")\Z", re.DOTALL)


def _compile_line(line: str) -> _Pattern | None:
    pattern = _trim_trailing_spaces(line)
    negated = pattern.startswith("!")
    if negated:
        pattern = pattern[1:]
    dir_only = pattern.endswith("/")
    if dir_only:
        pattern = pattern[:-1]
    anchored = "/" in pattern
    if anchored and pattern.startswith("/"):
        pattern = pattern[1:]
    if not pattern:
        return None
    try:
        if anchored:
            regex = _segments_regex(pattern.split("/"))
        else:
            regex = "(?:.*/)?" + _glob_regex(pattern)
    except _Unmatchable:
        return None
    return _Pattern(regex, negated, dir_only)


def _trim_trailing_spaces(line: str) -> str:
    """Git drops trailing spaces unless the last one is escaped with a backslash."""
    end = len(line)
    while end and line[end - 1] == " ":
        slashes = len(line[: end - 1]) - len(line[: end - 1].rstrip("\\"))
        if slashes % 2:
            break
        end -= 1
    return line[:end]


def _segments_regex(segs: list[str]) -> str:
    """An anchored pattern: `**` as a whole segment crosses directories."""
    if segs == ["**"]:
        return ".*"
    out = ""
    joined = True  # nothing to separate from yet
    last = len(segs) - 1
    for i, seg in enumerate(segs):
        if seg == "**":
            if i == 0:
                out += "(?:.*/)?"
                continue
            out += "/.*" if i == last else "(?:/.*)?"
            joined = False
            continue
        out += ("" if joined else "/") + _glob_regex(seg)
        joined = False
    return out


def _glob_regex(glob: str) -> str:
    """One path segment's wildcards (`*`, `?`, `[...]`, backslash escapes); none cross '/'."""
    out = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            while i < n and glob[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            cls, i = _bracket_regex(glob, i + 1)
            out.append(cls)
            continue
        elif c == "\\":
            i += 1
            if i == n:
                raise _Unmatchable(glob)
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _bracket_regex(glob: str, i: int) -> tuple[str, int]:
    """A bracket expression starting after '['; returns its regex and the index after ']'."""
    n = len(glob)
    negated = i < n and glob[i] in "!^"
    if negated:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= n:
            raise _Unmatchable(glob)
        c = glob[i]
        if c == "]" and not first:
            i += 1
            break
        first = False
        if c == "[" and glob.startswith("[:", i):
            end = glob.find(":]", i + 2)
            if end == -1 or glob[i + 2 : end] not in _CLASSES:
                raise _Unmatchable(glob)
            items.append(_CLASSES[glob[i + 2 : end]])
            i = end + 2
            continue
        if c == "\\":
            i += 1
            if i >= n:
                raise _Unmatchable(glob)
            c = glob[i]
        i += 1
        if i + 1 < n and glob[i] == "-" and glob[i + 1] != "]":
            hi = glob[i + 1]
            i += 2
            if hi == "\\":
                if i >= n:
                    raise _Unmatchable(glob)
                hi = glob[i]
                i += 1
            if hi >= c:  # a reversed range matches nothing
                items.append(f"{re.escape(c)}-{re.escape(hi)}")
            continue
        items.append(re.escape(c))
    body = "".join(items)
    if negated:
        return f"[^/{body}]", i
    return (f"(?!/)[{body}]" if body else "(?!)"), i


class Unignored(Mapping[str, Entry]):
    """Another device's entries without those an ignore rule covers, each tested when
    asked for: a pass that looks up a few paths does not test every entry."""

    def __init__(self, entries: Mapping[str, Entry], ignore: IgnoreRules) -> None:
        self._entries = entries
        self._ignore = ignore

    def _ignored(self, path: str, entry: Entry) -> bool:
        return self._ignore.matches(path, entry.type == "dir")

    def __getitem__(self, path: str) -> Entry:
        entry = self._entries[path]
        if self._ignored(path, entry):
            raise KeyError(path)
        return entry

    def __iter__(self) -> Iterator[str]:
        return (p for p, e in self._entries.items() if not self._ignored(p, e))

    def __len__(self) -> int:
        return sum(1 for _ in self)
