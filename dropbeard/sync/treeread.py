"""Reading whole trees: walk every path, look one up, and diff two roots descending only
into nodes whose keys differ (IO: through `sync.trees.TreeStore`).

Paths come in tree order (`core.treediff.tree_order`); paged directories are transparent.
Whatever a hostile bucket holds, a tree is refused with one `FormatError` line naming
the node at fault when it is not a tree dropbeard could have written: a cycle (a node on
its own path), folders nested more than `MAX_DEPTH` deep or a path over 4096 bytes, more
than `MAX_PAGE_LEVELS` levels of pages in one folder, pages whose entries are out of
order or do not start with their `first`, `.dropbear` in the root, or more than
`MAX_PATHS` paths (a few nodes reused under many names). Bytes that do not
match their key are an `IntegrityError`, a missing node `NotFound` (from `TreeStore`).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

import msgspec

from dropbeard.core.errors import FormatError, quoted
from dropbeard.core.paths import MAX_PATH_BYTES
from dropbeard.core.tree import Node, TreeEntry, reserved_in_root
from dropbeard.core.treediff import Difference, same_entry
from dropbeard.sync.treeahead import ReadAhead
from dropbeard.sync.trees import TreeStore

#: Folders nested deeper than this are refused (with names of one byte, a 4096-byte
#: path holds at most 2048; no real folder comes near 256).
MAX_DEPTH = 256
#: Levels of index nodes in one folder: 8 levels of 128 pages hold more entries than
#: any store can list; dropbeard's trees need 4 for a folder of 10 million entries.
MAX_PAGE_LEVELS = 8
#: Paths one diff (or walk) hands out at most. Nodes are content-addressed, so one node
#: may be named under many names: forty levels of two names for the same folder are a
#: few hundred bytes naming 2**40 paths. No folder anyone syncs comes near this.
MAX_PATHS = 50_000_000


class _Ref(msgspec.Struct, frozen=True):
    """A node not read yet in a folder's listing: the folder's own node (`first` ""),
    or one of its pages, with the keys of the nodes above it in that folder."""

    first: str
    key: str
    level: int
    above: frozenset[str]


_Item = TreeEntry | _Ref


def _name(item: _Item) -> str:
    return item.name if isinstance(item, TreeEntry) else item.first


class _Listing:
    """One folder's entries in name order, its pages read only when reached; with
    `ahead`, the nodes below it are read ahead of reaching them (`folder`: its path's
    names)."""

    def __init__(
        self,
        trees: TreeStore,
        key: str | None,
        ahead: ReadAhead | None = None,
        folder: tuple[str, ...] = (),
        pair: ReadAhead | None = None,
    ) -> None:
        self.trees = trees
        self.items: deque[_Item] = deque()
        if key is not None:
            self.items.append(_Ref("", key, 0, frozenset()))
        self.ahead = ahead
        self.folder = folder
        self.pair = pair  # a folder on both sides: read what changed below it ahead

    def head(self) -> _Item | None:
        return self.items[0] if self.items else None

    def pop(self) -> None:
        self.items.popleft()

    async def expand(self) -> None:
        """Replace the node at the head by its entries or pages, checking they fit."""
        ref = self.items.popleft()
        assert isinstance(ref, _Ref)
        if self.ahead is not None:
            await self.ahead.need(ref.key)
        node = await self.trees.node(ref.key)
        children = self._children(ref, node)
        key = self.trees.key(ref.key)
        if ref.first and (not children or _name(children[0]) != ref.first):
            raise FormatError(f"invalid tree {key}: a page that does not start at its first")
        if children and self.items and _name(children[-1]) >= _name(self.items[0]):
            raise FormatError(f"invalid tree {key}: a page that runs past the next page")
        self.items.extendleft(reversed(children))
        if self.ahead is not None:
            self.ahead.reached(self.folder, node)

    def _children(self, ref: _Ref, node: Node) -> list[_Item]:
        if node.entries is not None:
            return list(node.entries)
        key = self.trees.key(ref.key)
        if ref.level >= MAX_PAGE_LEVELS:
            raise FormatError(f"invalid tree {key}: more than {MAX_PAGE_LEVELS} levels of pages")
        above = ref.above | {ref.key}
        pages = node.pages or []
        for page in pages:
            if page.tree in above:
                raise FormatError(f"invalid tree {key}: a cycle (its pages lead back to it)")
        return [_Ref(p.first, p.tree, ref.level + 1, above) for p in pages]


async def _differences(old: _Listing, new: _Listing) -> AsyncIterator[Difference]:
    """(name, old, new) for every name whose entry differs between two listings, in name
    order, skipping every node (page) the two share."""
    while True:
        a, b = old.head(), new.head()
        if a is None and b is None:
            return
        if isinstance(a, _Ref) and isinstance(b, _Ref):
            if a.key == b.key:
                old.pop()
                new.pop()
            elif a.first != b.first:
                await (old if a.first < b.first else new).expand()
            else:
                await _expand_aligned(old, new, a, b)
        elif isinstance(a, _Ref) or isinstance(b, _Ref):
            ref, entry = (a, b) if isinstance(a, _Ref) else (b, a)
            assert isinstance(ref, _Ref) and not isinstance(entry, _Ref)
            if entry is not None and entry.name < ref.first:  # the other side cannot hold it
                (new if entry is b else old).pop()
                yield (entry.name, None, entry) if entry is b else (entry.name, entry, None)
            else:
                await (old if ref is a else new).expand()
        elif b is None or (a is not None and a.name < b.name):
            assert a is not None
            old.pop()
            yield a.name, a, None
        elif a is None or b.name < a.name:
            new.pop()
            yield b.name, None, b
        else:
            old.pop()
            new.pop()
            if a != b:
                yield a.name, a, b


async def _expand_aligned(old: _Listing, new: _Listing, a: _Ref, b: _Ref) -> None:
    """Two different nodes starting at the same name: open only the one that is an
    index when the other is not (their pages may be shared), else both. Two folder
    nodes read ahead (`pair`) are read at once, with what the read-ahead holds next."""
    pair = old.pair
    if pair is not None:
        await pair.need(a.key, b.key)
    a_node, b_node = await old.trees.node(a.key), await new.trees.node(b.key)
    a_index, b_index = a_node.pages is not None, b_node.pages is not None
    if a_index == b_index or a_index:
        await old.expand()
    if a_index == b_index or b_index:
        await new.expand()
    if pair is not None and not a.first:  # the folder's own nodes, not pages of it
        pair.reached_pair(old.folder, a_node, b_node)


class _Folder(msgspec.Struct):
    """A folder being diffed: its path, its node on each side, the nodes above it."""

    path: str
    keys: tuple[str | None, str | None]
    above: tuple[frozenset[str], frozenset[str]]
    differences: AsyncIterator[Difference]


def _open_folder(
    trees: TreeStore,
    path: str,
    keys: tuple[str | None, str | None],
    above: tuple[frozenset[str], frozenset[str]],
    ahead: ReadAhead,
) -> _Folder:
    depth = path.count("/") + 1 if path else 0
    for key, seen in zip(keys, above, strict=True):
        if key is not None and key in seen:
            raise FormatError(f"invalid tree {trees.key(key)}: a cycle (a folder holds itself)")
        if key is not None and depth > MAX_DEPTH:
            raise FormatError(
                f"invalid tree {trees.key(key)}: folders nested deeper than {MAX_DEPTH}"
            )
    # A folder on one side only is read whole: read its nodes ahead. Where both sides
    # hold it, only the nodes on changed paths are read ahead: the subfolders whose
    # nodes differ (`ReadAhead.reached_pair`).
    one_sided = keys[0] is None or keys[1] is None
    folder = tuple(path.split("/")) if path else ()
    whole, pair = (ahead, None) if one_sided else (None, ahead)
    old = _Listing(trees, keys[0], whole, folder, pair)
    new = _Listing(trees, keys[1], whole, folder, pair)
    return _Folder(path, keys, above, _differences(old, new))


def _check_path(trees: TreeStore, path: str, keys: tuple[str | None, str | None]) -> None:
    if "/" not in path and reserved_in_root(path):
        key = trees.key(keys[1] or keys[0] or "")
        raise FormatError(f"invalid tree {key}: the root lists {path!r}")
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        key = trees.key(keys[1] or keys[0] or "")
        raise FormatError(
            f"invalid tree {key}: path {quoted(path)} is longer than {MAX_PATH_BYTES} bytes"
        )


async def diff(
    trees: TreeStore, old_root: str | None, new_root: str | None
) -> AsyncGenerator[Difference]:
    """(path, old entry or None, new entry or None) for every path whose entry differs
    between two trees (either may be None: empty), in tree order; a folder whose own
    entry is unchanged is not reported when only what it holds changed. Reads only
    nodes on changed paths. More than `MAX_PATHS` paths: FormatError naming the root."""
    if old_root == new_root:
        return
    seen = 0
    empty: frozenset[str] = frozenset()
    # One frame per open folder, not one generator per level: a path deep in the tree
    # costs the same to hand out as one at the top.
    ahead = ReadAhead(trees)
    stack = [_open_folder(trees, "", (old_root, new_root), (empty, empty), ahead)]
    while stack:
        folder = stack[-1]
        try:
            name, a, b = await anext(folder.differences)
        except StopAsyncIteration:
            stack.pop()
            continue
        path = f"{folder.path}/{name}" if folder.path else name
        _check_path(trees, path, folder.keys)
        seen += 1
        if seen > MAX_PATHS:
            raise FormatError(
                f"invalid tree {trees.key(new_root or old_root or '')}: "
                f"it names more than {MAX_PATHS} paths"
            )
        if a is None or b is None or not same_entry(a, b):
            yield path, a, b
        sub = (a.tree if a else None, b.tree if b else None)
        if sub[0] != sub[1]:
            (old_key, new_key), (old_above, new_above) = folder.keys, folder.above
            above = (old_above | {old_key or ""}, new_above | {new_key or ""})
            stack.append(_open_folder(trees, path, sub, above, ahead))


async def folder_entries(trees: TreeStore, key: str) -> AsyncIterator[TreeEntry]:
    """The entries of the folder whose node is `key`, in name order, pages transparent."""
    async for _, _, entry in _differences(_Listing(trees, None), _Listing(trees, key)):
        assert entry is not None
        yield entry


async def walk(trees: TreeStore, root: str) -> AsyncIterator[tuple[str, TreeEntry]]:
    """Every (path, entry) of the tree `root`, in tree order."""
    async for path, _, entry in diff(trees, None, root):
        assert entry is not None
        yield path, entry


async def lookup(trees: TreeStore, root: str, path: str) -> TreeEntry | None:
    """The entry at `path` in tree `root`, or None; reads one node per folder and page
    level on the way."""
    key = root
    names = path.split("/")
    for depth, name in enumerate(names):
        entry = await _find(trees, key, name)
        if entry is None or depth == len(names) - 1:
            return entry
        if entry.tree is None:
            return None
        key = entry.tree
    return None


async def _find(trees: TreeStore, key: str, name: str) -> TreeEntry | None:
    node = await trees.node(key)
    for _ in range(MAX_PAGE_LEVELS):
        if node.pages is None:
            break
        at = bisect.bisect_right(node.pages, name, key=lambda p: p.first) - 1
        if at < 0:
            return None
        node = await trees.node(node.pages[at].tree)
    else:
        if node.pages is not None:
            raise FormatError(
                f"invalid tree {trees.key(key)}: more than {MAX_PAGE_LEVELS} levels of pages"
            )
    entries = node.entries or []
    at = bisect.bisect_left(entries, name, key=lambda e: e.name)
    return entries[at] if at < len(entries) and entries[at].name == name else None
