"""Differences between two listings of one directory, and conversions between the
path-keyed entries of `core.model` and the name-keyed entries of tree nodes (pure).

Paths in a tree are listed in *tree order*: a directory, then everything under it, then
its next sibling, siblings by the UTF-8 bytes of their names. That is not the order of
the paths as strings (`a-b` sorts before `a/c` as a string, after it in tree order);
`tree_order` is a sort key that gives it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from dropbeard.core.model import Entry
from dropbeard.core.tree import TreeEntry

Difference = tuple[str, TreeEntry | None, TreeEntry | None]


def tree_order(path: str) -> str:
    """Sort key putting paths in tree order: `/` becomes NUL, which sorts below every
    character a name may hold (names never contain NUL). Usable in SQL as
    `ORDER BY replace(path, '/', char(0))`."""
    return path.replace("/", "\x00")


def same_entry(old: TreeEntry, new: TreeEntry) -> bool:
    """True if two entries of one path say the same about it, whatever is inside (a
    directory's `tree` is what it holds, not the directory itself)."""
    if old.tree is None or new.tree is None or old.tree == new.tree:
        return old == new
    return msgspec.structs.replace(old, tree=new.tree) == new


def diff_entries(old: Sequence[TreeEntry], new: Sequence[TreeEntry]) -> Iterator[Difference]:
    """(name, old entry or None, new entry or None) for every name whose entry differs
    (in any field, `tree` included) between two name-sorted listings, in name order."""
    i = j = 0
    while i < len(old) or j < len(new):
        a = old[i] if i < len(old) else None
        b = new[j] if j < len(new) else None
        if b is None or (a is not None and a.name < b.name):
            assert a is not None
            yield a.name, a, None
            i += 1
        elif a is None or b.name < a.name:
            yield b.name, None, b
            j += 1
        else:
            if a != b:
                yield a.name, a, b
            i += 1
            j += 1


def to_tree_entry(entry: Entry, tree: str | None = None) -> TreeEntry:
    """The tree entry for `entry` (named by the last segment of its path); `tree` is the
    key of a directory's node."""
    return TreeEntry(
        name=entry.path.rpartition("/")[2],
        type=entry.type,
        size=entry.size,
        target=entry.target,
        mode=entry.mode,
        mtime_ns=entry.mtime_ns,
        sha256=entry.sha256,
        chunks=entry.chunks,
        version=entry.version,
        tree=tree if entry.type == "dir" else None,
    )


def to_entry(path: str, entry: TreeEntry) -> Entry:
    """The path-keyed entry for the tree entry found at `path` (all but a folder's `tree`:
    what it holds are entries of their own)."""
    return Entry(
        path=path,
        type=entry.type,
        mode=entry.mode,
        version=entry.version,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        sha256=entry.sha256,
        target=entry.target,
        chunks=entry.chunks,
    )
