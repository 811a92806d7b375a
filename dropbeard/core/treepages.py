"""Large directories in pages (SPEC 1.1 "Large directories"): building a directory's
nodes (pure). Changing a few names of one reading only their paths: `core.treesplice`.

A directory of at most 128 entries is one node. A larger one is cut into pages after
every entry whose name's SHA-256 starts with a 16-bit big-endian word below 2048 (one cut
per 32 entries on average), and in any case after 128 entries; its node is then an index
of the pages. An index of more than 128 pages is cut the same way (by each page's
`first`) into index pages under a higher index, until the top holds at most 128. So no
node dropbeard writes lists more than 128 items: about 24 KiB of ordinary file entries,
under 32 KiB for names up to ~60 bytes. (SPEC 1.1 says 256 / 512 / 512, which lets a
page of tiny files reach ~90 KiB; issue 10 asks every page an edit rewrites to stay
under 32 KiB. A reader does not care where the cuts fall.)

Cutting runs left to right and starts afresh after every cut, so the cut before an
unchanged page never moves: a change re-cuts from the start of the first page it touches
until the new cuts line up with an old page boundary again, usually at the end of that
same page (one page rewritten per level; two when the change moves a cut).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import msgspec

from dropbeard.core.tree import Page, TreeEntry, entries_node, index_node, node_key

#: A directory (or an index) with more items than this is cut into pages.
FANOUT = 128
#: No page holds more items than this.
MAX_PAGE = 128
#: A cut follows every item whose name's SHA-256 starts with a 16-bit word below this
#: (one in 32 on average).
CUT_BELOW = 2048

T = TypeVar("T")
NodeBytes = tuple[str, bytes]


def is_cut(name: str) -> bool:
    """True if a page ends after the item named `name`."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return (digest[0] << 8 | digest[1]) < CUT_BELOW


def cut(items: Iterable[T], name_of: Callable[[T], str]) -> list[list[T]]:
    """`items` (in order) cut into pages as SPEC 1.1 says."""
    pages: list[list[T]] = []
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) == MAX_PAGE or is_cut(name_of(item)):
            pages.append(page)
            page = []
    if page:
        pages.append(page)
    return pages


class DirectoryBuild(msgspec.Struct, frozen=True):
    """A directory's top node (`top`, keyed `key`) and the nodes of it that are new:
    every node a build made, or those a rebuild could not reuse (the top last)."""

    top: bytes
    key: str
    nodes: list[NodeBytes]


def _page_of(entries: Sequence[TreeEntry]) -> tuple[Page, NodeBytes]:
    data = entries_node(entries)
    key = node_key(data)
    return Page(entries[0].name, key), (key, data)


def index_levels(
    pages: list[Page], reusable: Mapping[str, tuple[str, list[Page]]] | None = None
) -> DirectoryBuild:
    """The index nodes over leaf `pages` (more than zero), up to a top of at most FANOUT.
    An index page equal to one in `reusable` (an old index node's key and pages, by the
    key of its first page) is reused, not counted as new."""
    nodes: list[NodeBytes] = []
    while len(pages) > FANOUT:
        upper: list[Page] = []
        for group in cut(pages, lambda p: p.first):
            old = reusable.get(group[0].tree) if reusable else None
            if old is not None and old[1] == group:
                upper.append(Page(group[0].first, old[0]))
                continue
            data = index_node(group)
            key = node_key(data)
            nodes.append((key, data))
            upper.append(Page(group[0].first, key))
        pages = upper
    top = index_node(pages)
    key = node_key(top)
    nodes.append((key, top))
    return DirectoryBuild(top, key, nodes)


class DirectoryBuilder(msgspec.Struct):
    """Builds one directory from its entries fed in name order, handing back each page as
    soon as it is complete: memory holds one page and the list of pages, not every entry.

        builder = DirectoryBuilder()
        for entry in entries:
            write(builder.add(entry))
        write(builder.finish().nodes)
    """

    _pending: list[TreeEntry] = msgspec.field(default_factory=list)
    _pages: list[Page] = msgspec.field(default_factory=list)
    _count: int = 0
    _last: str | None = None

    def add(self, entry: TreeEntry) -> list[NodeBytes]:
        """Add the next entry; the pages it completed (ValueError if out of order)."""
        if self._last is not None and entry.name <= self._last:
            raise ValueError(f"entry {entry.name!r} does not sort after {self._last!r}")
        self._last = entry.name
        self._pending.append(entry)
        self._count += 1
        if self._count <= FANOUT:
            return []  # it may stay one node: keep every entry until it cannot
        if self._count == FANOUT + 1:
            pages = cut(self._pending, lambda e: e.name)
            self._pending = [] if _is_closed(pages[-1]) else pages.pop()
            return [self._settle(page) for page in pages]
        if _is_closed(self._pending):
            page, self._pending = self._pending, []
            return [self._settle(page)]
        return []

    def _settle(self, page: list[TreeEntry]) -> NodeBytes:
        ref, node = _page_of(page)
        self._pages.append(ref)
        return node

    def finish(self) -> DirectoryBuild:
        """The directory's top node and the nodes not handed back by `add` yet."""
        if self._count <= FANOUT:
            data = entries_node(self._pending)
            key = node_key(data)
            return DirectoryBuild(data, key, [(key, data)])
        nodes = [self._settle(self._pending)] if self._pending else []
        built = index_levels(self._pages)
        return DirectoryBuild(built.top, built.key, nodes + built.nodes)


def _is_closed(page: Sequence[TreeEntry]) -> bool:
    """True if a cut follows the last entry of `page` whatever comes next."""
    return len(page) == MAX_PAGE or is_cut(page[-1].name)


def build_directory(entries: Iterable[TreeEntry]) -> DirectoryBuild:
    """Every node of a directory listing `entries` (in any order; names unique)."""
    builder = DirectoryBuilder()
    nodes: list[NodeBytes] = []
    for entry in sorted(entries, key=lambda e: e.name):
        nodes += builder.add(entry)
    built = builder.finish()
    return DirectoryBuild(built.top, built.key, nodes + built.nodes)


def apply_changes(
    entries: Iterable[TreeEntry], changes: Mapping[str, TreeEntry | None]
) -> list[TreeEntry]:
    """`entries` with `changes` applied (name -> new entry, or None to remove), sorted."""
    by_name = {e.name: e for e in entries}
    for name, entry in changes.items():
        if entry is None:
            by_name.pop(name, None)
        else:
            by_name[name] = entry
    return sorted(by_name.values(), key=lambda e: e.name)
