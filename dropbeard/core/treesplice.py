"""Changing a few names of a paged directory reading only the nodes on their paths
(pure): descend the index by name to the leaf pages the names fall in, re-cut those
pages (and a neighbour when a cut moves), then re-cut only the index nodes above what
changed, level by level up to the top. The result is the directory `build_directory`
makes of the changed listing, if the old one was built that way (`core.treepages`).

Nodes are handed in as a map of those read so far; the answer is `NeedNodes` until it
holds every node the change needs: one per level on each changed name's path, the next
node at a level where a cut moved, and, when the change removes items from a level that
may then hold FANOUT or fewer (and so stop being cut), the nodes of that level until it
is known to keep more (rare: a handful of nodes). A node is addressed by the indexes of
the pages leading to it from the top: those sort as the nodes of a level do.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from dropbeard.core.tree import Node, Page, TreeEntry, entries_node, index_node, node_key
from dropbeard.core.treepages import (
    FANOUT,
    MAX_PAGE,
    DirectoryBuild,
    NodeBytes,
    apply_changes,
    build_directory,
    index_levels,
    is_cut,
)

Address = tuple[int, ...]
Item = TreeEntry | Page
#: Nodes asked for at once while counting what a shrinking level still holds.
COUNT_BATCH = 4


class NeedNodes(msgspec.Struct, frozen=True):
    """The change needs these nodes (keys) first."""

    keys: list[str]


class UnevenPages(Exception):
    """The directory is not paged as dropbeard pages (its leaf pages are not all equally
    deep, or deeper than the caller allows): read it whole instead."""


class _Missing(Exception):
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys


def _name(item: Item) -> str:
    return item.name if isinstance(item, TreeEntry) else item.first


def _items(node: Node) -> Sequence[Item]:
    return node.entries if node.entries is not None else node.pages or []


def _make(group: list[Item]) -> tuple[Page, NodeBytes]:
    if isinstance(group[0], TreeEntry):
        data = entries_node([e for e in group if isinstance(e, TreeEntry)])
    else:
        data = index_node([p for p in group if isinstance(p, Page)])
    key = node_key(data)
    return Page(_name(group[0]), key), (key, data)


class _Paged(msgspec.Struct):
    """The old directory as far as it is read: its top, its depth (levels of index)."""

    top: str
    nodes: Mapping[str, Node]
    depth: int
    keys: dict[Address, str] = msgspec.field(default_factory=dict)

    def key_at(self, address: Address) -> str:
        key = self.keys.get(address)
        if key is None:
            parent = self.node_at(address[:-1])
            key = self.keys[address] = (parent.pages or [])[address[-1]].tree
        return key

    def node_at(self, address: Address) -> Node:
        """The node at `address` (a leaf page when as long as the depth); _Missing if it
        is not read yet, UnevenPages if its kind does not fit its level."""
        key = self.top if not address else self.key_at(address)
        node = self.nodes.get(key)
        if node is None:
            raise _Missing([key])
        if (node.entries is not None) != (len(address) == self.depth):
            raise UnevenPages("leaf pages at different depths")
        return node

    def items(self, address: Address) -> Sequence[Item]:
        return _items(self.node_at(address))

    def leaf_of(self, name: str) -> Address:
        """The address of the leaf page holding `name`, or that would."""
        address: Address = ()
        for _ in range(self.depth):
            pages = self.node_at(address).pages or []
            at = max(0, bisect.bisect_right(pages, name, key=lambda p: p.first) - 1)
            address += (at,)
        self.node_at(address)
        return address

    def successor(self, address: Address) -> Address | None:
        """The next node of the same level, or None after the last."""
        if not address:
            return None
        parent = self.node_at(address[:-1])
        if address[-1] + 1 < len(parent.pages or []):
            return (*address[:-1], address[-1] + 1)
        up = self.successor(address[:-1])
        return None if up is None else (*up, 0)

    def known(self, level: int) -> tuple[list[Node], list[str]]:
        """The nodes read at `level` (0: leaf pages), and the keys not read of the nodes
        nearest below what was read: at `level` if any, else the level above."""
        nodes: list[Node] = []
        unread: list[list[str]] = [[] for _ in range(self.depth + 1)]
        stack: list[tuple[int, str]] = [(self.depth, self.top)]
        while stack:
            at, key = stack.pop()
            node = self.nodes.get(key)
            if node is None:
                unread[at].append(key)
            elif at == level:
                nodes.append(node)
            else:
                stack.extend((at - 1, p.tree) for p in node.pages or [])
        frontier = next((keys for keys in unread[level:] if keys), [])
        return nodes, frontier


def _depth(nodes: Mapping[str, Node], top: str, probe: str, max_levels: int) -> int:
    """How many levels of index lead from `top` to its leaf pages (going down towards
    the name `probe`: the path a change needs anyway)."""
    depth, key = 0, top
    while True:
        node = nodes.get(key)
        if node is None:
            raise _Missing([key])
        if node.pages is None:
            return depth
        if depth >= max_levels or not node.pages:
            raise UnevenPages(f"more than {max_levels} levels of pages")
        at = max(0, bisect.bisect_right(node.pages, probe, key=lambda p: p.first) - 1)
        depth, key = depth + 1, node.pages[at].tree


def lookup_paged(
    top: str, nodes: Mapping[str, Node], names: Iterable[str], max_levels: int
) -> dict[str, TreeEntry] | NeedNodes:
    """The entries at `names` of the paged directory `top` (those it has)."""
    try:
        wanted = sorted(set(names))
        tree = _Paged(top, nodes, _depth(nodes, top, min(wanted, default=""), max_levels))
        missing = _leaves(tree, wanted)
        if missing:
            return NeedNodes(missing)
        found: dict[str, TreeEntry] = {}
        for name in wanted:
            entries = tree.node_at(tree.leaf_of(name)).entries or []
            at = bisect.bisect_left(entries, name, key=lambda e: e.name)
            if at < len(entries) and entries[at].name == name:
                found[name] = entries[at]
        return found
    except _Missing as missing:
        return NeedNodes(missing.keys)


def _leaves(tree: _Paged, names: Iterable[str]) -> list[str]:
    """The keys missing on the way to the leaf pages of `names` (all of them at once at
    each level, so that a caller reads them concurrently)."""
    missing: list[str] = []
    for name in names:
        try:
            tree.leaf_of(name)
        except _Missing as exc:
            missing += [k for k in exc.keys if k not in missing]
    return missing


def splice_directory(
    top: str,
    nodes: Mapping[str, Node],
    changes: Mapping[str, TreeEntry | None],
    max_levels: int,
) -> DirectoryBuild | NeedNodes:
    """The paged directory whose top node is `top` with `changes` applied (name -> new
    entry, None removes it), from the nodes read so far (`nodes`, by key). Its nodes
    that are not in `nodes` come back in the DirectoryBuild, the top last."""
    try:
        probe = min(changes, default="")
        tree = _Paged(top, nodes, _depth(nodes, top, probe, max_levels))
        missing = _leaves(tree, sorted(changes))
        if missing:
            return NeedNodes(missing)
        return _splice(tree, changes)
    except _Missing as missing:
        return NeedNodes(missing.keys)


def _splice(tree: _Paged, changes: Mapping[str, TreeEntry | None]) -> DirectoryBuild:
    by_leaf: dict[Address, dict[str, TreeEntry | None]] = {}
    for name, entry in changes.items():
        by_leaf.setdefault(tree.leaf_of(name), {})[name] = entry
    edited: dict[Address, list[Item]] = {
        at: list(apply_changes(tree.node_at(at).entries or [], group))
        for at, group in by_leaf.items()
    }
    made: list[NodeBytes] = []
    for level in range(tree.depth + 1):
        level_of = tree.depth - level  # the length of this level's addresses
        if level_of == 0 or _may_stop_being_cut(tree, level, edited):
            sequence = _whole_level(tree, level, level_of, edited)
            if level_of == 0 or len(sequence) <= FANOUT:
                return _finish(tree, level, sequence, made)
        replaced = _recut(tree, edited)
        for _, new in replaced:
            made += [data for _, data in new]
        edited = _edits_above(tree, replaced)
    raise AssertionError("the top level always finishes")  # pragma: no cover


def _finish(
    tree: _Paged, level: int, sequence: list[Item], made: list[NodeBytes]
) -> DirectoryBuild:
    """The directory once `sequence`, the whole of `level`, is known: its top node."""
    if level == 0:
        built = build_directory([e for e in sequence if isinstance(e, TreeEntry)])
    else:
        built = index_levels([p for p in sequence if isinstance(p, Page)])
    fresh = [(k, d) for k, d in made + built.nodes if k not in tree.nodes]
    unique = list(dict(fresh).items())
    return DirectoryBuild(built.top, built.key, unique)


def _may_stop_being_cut(tree: _Paged, level: int, edited: Mapping[Address, list[Item]]) -> bool:
    """True unless `level` surely still holds more than FANOUT items after the edits
    (when it does not, the level is the new top: the caller reads it whole)."""
    lost = sum(len(tree.items(at)) - len(items) for at, items in edited.items())
    if lost <= 0:
        return False
    return _lower_bound(tree, level) - lost <= FANOUT


def _lower_bound(tree: _Paged, level: int) -> int:
    """How many items `level` held at least, from the nodes read (each node unread
    holds one at least; a level below the top held more than FANOUT)."""
    count = len(tree.items(()))  # the top's
    for at in range(tree.depth - 1, level - 1, -1):
        read, _ = tree.known(at)
        count = max(FANOUT + 1, sum(len(_items(n)) for n in read) + max(0, count - len(read)))
    return count


def _whole_level(
    tree: _Paged, level: int, level_of: int, edited: Mapping[Address, list[Item]]
) -> list[Item]:
    """Every item of `level` after the edits; _Missing until every node of the level is
    read (asking COUNT_BATCH at a time: reading on may show it keeps enough)."""
    _, unread = tree.known(level)
    if unread:
        raise _Missing(unread[:COUNT_BATCH])
    sequence: list[Item] = []
    at: Address | None = (0,) * level_of
    while at is not None:
        sequence += edited[at] if at in edited else tree.items(at)
        at = tree.successor(at)
    return sequence


Replaced = tuple[list[Address], list[tuple[Page, NodeBytes]]]


def _recut(tree: _Paged, edited: Mapping[Address, list[Item]]) -> list[Replaced]:
    """Re-cut one level from each edited node on until a cut lines up with an old node's
    end: which old nodes (in order) each run replaces, and by which new ones."""
    replaced: list[Replaced] = []
    done: set[Address] = set()
    for start in sorted(edited):
        if start in done:
            continue
        olds: list[Address] = []
        groups: list[list[Item]] = []
        pending: list[Item] = []
        at: Address | None = start
        while at is not None:
            for item in edited[at] if at in edited else tree.items(at):
                pending.append(item)
                if len(pending) == MAX_PAGE or is_cut(_name(item)):
                    groups.append(pending)
                    pending = []
            olds.append(at)
            done.add(at)
            if not pending:
                break  # lined up with the old boundary after `at`
            at = tree.successor(at)
        if pending:
            groups.append(pending)
        replaced.append((olds, [_make(g) for g in groups]))
    return replaced


def _edits_above(tree: _Paged, replaced: Sequence[Replaced]) -> dict[Address, list[Item]]:
    """The nodes of the level above with the pages replaced: each run's new pages where
    its first old one was, the others gone."""
    starts: dict[Address, list[Page]] = {}
    gone: set[Address] = set()
    for olds, new in replaced:
        starts[olds[0]] = [ref for ref, _ in new]
        gone.update(olds)
    edited: dict[Address, list[Item]] = {}
    for parent in sorted({at[:-1] for at in gone}):
        items: list[Item] = []
        for i, page in enumerate(tree.items(parent)):
            at = (*parent, i)
            if at in starts:
                items += starts[at]
            elif at not in gone:
                items.append(page)
        edited[parent] = items
    return edited
