"""Test support for tree nodes: entry builders and Hypothesis strategies for directory
listings and whole path maps (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hypothesis import strategies as st

from dropbeard.core.tree import Node, Page, TreeEntry, decode_node
from dropbeard.core.treepages import DirectoryBuild
from dropbeard.core.treesplice import splice_directory

#: Names drawn from a small alphabet (so that siblings and prefixes collide often), with
#: characters that sort differently as UTF-8 and as UTF-16, and `-` (below `/`).
NAME_ALPHABET = "ab-.zé日\U0001f600"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_entry(name: str, content: str = "", counter: int = 1) -> TreeEntry:
    return TreeEntry(
        name=name,
        type="file",
        size=len(content),
        mode=0o644,
        mtime_ns=1_747_936_150_000_000_000 + counter,
        sha256=sha(content),
        version={"laptop": counter},
    )


def dir_entry(name: str, counter: int = 1) -> TreeEntry:
    """A directory entry; `tree` is filled in by whoever builds the tree."""
    return TreeEntry(name=name, type="dir", mode=0o755, version={"laptop": counter})


def link_entry(name: str, target: str = "a", counter: int = 1) -> TreeEntry:
    return TreeEntry(name=name, type="symlink", target=target, mode=0o777, version={"pc": counter})


names = st.text(NAME_ALPHABET, min_size=1, max_size=4).filter(lambda n: n not in (".", ".."))


@st.composite
def leaf_entries(draw: st.DrawFn, name: str) -> TreeEntry:
    kind = draw(st.sampled_from(["file", "file", "symlink"]))
    counter = draw(st.integers(1, 3))
    if kind == "symlink":
        return link_entry(name, draw(st.sampled_from(["a", "../b", "c d"])), counter)
    return file_entry(name, draw(st.sampled_from(["", "x", "y"])), counter)


@st.composite
def path_maps(draw: st.DrawFn, max_dirs: int = 6, max_files: int = 12) -> dict[str, TreeEntry]:
    """A consistent tree as {path: entry} (directories without `tree`): every parent of a
    path is a directory in the map."""
    dirs = [""]
    result: dict[str, TreeEntry] = {}
    for _ in range(draw(st.integers(0, max_dirs))):
        parent = draw(st.sampled_from(dirs))
        name = draw(names)
        path = f"{parent}/{name}" if parent else name
        if path in result:
            continue
        result[path] = dir_entry(name, draw(st.integers(1, 2)))
        dirs.append(path)
    for _ in range(draw(st.integers(0, max_files))):
        parent = draw(st.sampled_from(dirs))
        name = draw(names)
        path = f"{parent}/{name}" if parent else name
        if path not in result:
            result[path] = draw(leaf_entries(name))
    return result


# --- pages: reading a directory's nodes back from {key: bytes} --------------------------


def decode(nodes: dict[str, bytes], key: str) -> Node:
    return decode_node(nodes[key], key, key)


@dataclass(frozen=True)
class IndexNode:
    """One index node of a paged directory: its key and its pages."""

    key: str
    pages: list[Page]


@dataclass(frozen=True)
class PagedShape:
    """The index nodes of a paged directory, level by level: `levels[0]` holds those
    over the leaf pages, the last level only the top."""

    levels: list[list[IndexNode]]


def shape_of(nodes: dict[str, bytes], key: str) -> PagedShape | None:
    """The index levels of the directory whose top node is `key` (None if not paged)."""
    top = decode(nodes, key)
    if top.pages is None:
        return None
    levels = [[IndexNode(key, top.pages)]]
    while decode(nodes, levels[0][0].pages[0].tree).pages is not None:
        below = [p.tree for n in levels[0] for p in n.pages]
        levels.insert(0, [IndexNode(k, decode(nodes, k).pages or []) for k in below])
    return PagedShape(levels)


def rebuild(
    nodes: dict[str, bytes], key: str, changes: dict[str, TreeEntry | None]
) -> tuple[DirectoryBuild, list[str]]:
    """`splice_directory` run to the end, reading nodes from `nodes`; also the keys of
    the leaf pages it read, in the order asked."""
    result, read = splice(nodes, key, changes)
    return result, [k for k in read if decode(nodes, k).entries is not None]


def splice(
    nodes: dict[str, bytes], key: str, changes: dict[str, TreeEntry | None]
) -> tuple[DirectoryBuild, list[str]]:
    """`splice_directory` run to the end; also every node it read besides the top."""
    loaded = {key: decode(nodes, key)}
    read: list[str] = []
    while True:
        result = splice_directory(key, loaded, changes, max_levels=8)
        if isinstance(result, DirectoryBuild):
            return result, read
        for k in result.keys:
            assert k not in loaded, "asked twice for one node"
            loaded[k] = decode(nodes, k)
            read.append(k)


def leaf_pages(nodes: dict[str, bytes], key: str) -> list[list[TreeEntry]]:
    """The entries of each leaf page of a directory (one list if it is not paged)."""
    node = decode(nodes, key)
    if node.entries is not None:
        return [node.entries]
    return [page for p in node.pages or [] for page in leaf_pages(nodes, p.tree)]
