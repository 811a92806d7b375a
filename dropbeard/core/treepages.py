"""Large directories in pages (SPEC 1.1 "Large directories"): building a directory's
nodes, and rebuilding them after a change reusing every page the change does not reach
(pure).

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

import bisect
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

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


@dataclass(frozen=True)
class DirectoryBuild:
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


@dataclass
class DirectoryBuilder:
    """Builds one directory from its entries fed in name order, handing back each page as
    soon as it is complete: memory holds one page and the list of pages, not every entry.

        builder = DirectoryBuilder()
        for entry in entries:
            write(builder.add(entry))
        write(builder.finish().nodes)
    """

    _pending: list[TreeEntry] = field(default_factory=list)
    _pages: list[Page] = field(default_factory=list)
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


# --- rebuilding a paged directory ------------------------------------------------------


@dataclass(frozen=True)
class IndexNode:
    """One index node of a directory already in the bucket: its key and its pages."""

    key: str
    pages: list[Page]


@dataclass(frozen=True)
class PagedShape:
    """The index nodes of a paged directory, level by level: `levels[0]` holds the
    nodes whose pages are leaf pages (of entries), the last level only the top."""

    levels: list[list[IndexNode]]

    def leaf_pages(self) -> list[Page]:
        return [page for node in self.levels[0] for page in node.pages]


@dataclass(frozen=True)
class NeedPages:
    """A rebuild needs the entries of these leaf pages (keys) first."""

    keys: list[str]


def _page_index(firsts: Sequence[str], name: str) -> int:
    """Which leaf page holds `name`, or would (names before the first go to the first)."""
    return max(0, bisect.bisect_right(firsts, name) - 1)


def pages_holding(shape: PagedShape, names: Iterable[str]) -> list[str]:
    """The keys of the leaf pages of `shape` that hold `names` (or would), in order."""
    refs = shape.leaf_pages()
    firsts = [p.first for p in refs]
    return [refs[i].tree for i in sorted({_page_index(firsts, name) for name in names})]


def rebuild_directory(
    shape: PagedShape,
    changes: Mapping[str, TreeEntry | None],
    loaded: Mapping[str, Sequence[TreeEntry]],
) -> DirectoryBuild | NeedPages:
    """The paged directory `shape` with `changes` applied (name -> entry, None removes),
    reusing every page and index page the change leaves alone. `loaded` holds the entries
    of the leaf pages read so far; the answer is NeedPages until it holds all it needs
    (the pages the changes fall in, a neighbour when a cut moved, and, when the directory
    may have shrunk to FANOUT entries or fewer, the rest). The result is what
    `build_directory` makes of the same listing, if `shape` was built that way."""
    refs = shape.leaf_pages()
    firsts = [p.first for p in refs]
    touched: dict[int, dict[str, TreeEntry | None]] = {}
    for name, entry in changes.items():
        touched.setdefault(_page_index(firsts, name), {})[name] = entry
    missing = [refs[i].tree for i in sorted(touched) if refs[i].tree not in loaded]
    if missing:
        return NeedPages(missing)
    recut = _recut(refs, touched, loaded)
    if isinstance(recut, NeedPages):
        return recut
    new_refs, made = recut
    old_keys = {p.tree for p in refs} | {n.key for level in shape.levels for n in level}

    def entries_of(page: Page) -> Sequence[TreeEntry] | None:
        return made[page.tree][1] if page.tree in made else loaded.get(page.tree)

    shrinks = _may_shrink_to_one_node(refs, new_refs, made, loaded)
    if shrinks:
        unknown = [p.tree for p in new_refs if entries_of(p) is None]
        if unknown:
            return NeedPages(unknown[:2])  # read pages until that is settled
        shrinks = sum(len(entries_of(p) or ()) for p in new_refs) <= FANOUT
    if shrinks:
        built = build_directory(e for p in new_refs for e in entries_of(p) or ())
    else:
        reusable = {n.pages[0].tree: (n.key, n.pages) for level in shape.levels for n in level}
        index = index_levels(new_refs, reusable)
        pages = [(key, data) for key, (data, _) in made.items()]
        built = DirectoryBuild(index.top, index.key, pages + index.nodes)
    new = [(key, data) for key, data in built.nodes if key not in old_keys]
    return DirectoryBuild(built.top, built.key, new)


def _may_shrink_to_one_node(
    refs: Sequence[Page],
    new_refs: Sequence[Page],
    made: Mapping[str, tuple[bytes, list[TreeEntry]]],
    loaded: Mapping[str, Sequence[TreeEntry]],
) -> bool:
    """False if the directory surely still holds more than FANOUT entries: it gained none
    less than it lost (a paged directory had more), or the pages known hold more."""
    old_keys = {p.tree for p in refs}
    new_keys = {p.tree for p in new_refs}
    gained = sum(len(made[p.tree][1]) for p in new_refs if p.tree not in old_keys)
    lost = sum(len(loaded[p.tree]) for p in refs if p.tree not in new_keys)
    if gained >= lost:
        return False
    known = 0
    for page in new_refs:
        entries = made[page.tree][1] if page.tree in made else loaded.get(page.tree)
        known += 1 if entries is None else len(entries)
    return known <= FANOUT


def _recut(
    refs: list[Page],
    touched: Mapping[int, Mapping[str, TreeEntry | None]],
    loaded: Mapping[str, Sequence[TreeEntry]],
) -> tuple[list[Page], dict[str, tuple[bytes, list[TreeEntry]]]] | NeedPages:
    """The new leaf pages: old ones reused up to each touched page, re-cut from there
    until a cut falls on an old page boundary again."""
    new_refs: list[Page] = []
    made: dict[str, tuple[bytes, list[TreeEntry]]] = {}

    def emit(page: list[TreeEntry]) -> None:
        ref, (key, data) = _page_of(page)
        new_refs.append(ref)
        made[key] = (data, page)

    done = 0
    for start in sorted(touched):
        if start < done:
            continue  # re-cut already, with the page before it
        new_refs.extend(refs[done:start])
        page: list[TreeEntry] = []
        at = start
        while at < len(refs):
            old = loaded.get(refs[at].tree)
            if old is None:
                return NeedPages([refs[at].tree])  # the cut moved: the next page is needed
            for entry in apply_changes(old, touched.get(at, {})):
                page.append(entry)
                if len(page) == MAX_PAGE or is_cut(entry.name):
                    emit(page)
                    page = []
            at += 1
            if not page:
                break  # lined up with the old boundary before page `at`
        if page:
            emit(page)
        done = at
    new_refs.extend(refs[done:])
    return new_refs, made
