"""Writing trees: `update` applies changed paths to a tree rewriting only the nodes on
their way, `build` makes a tree from every path of a folder with memory bounded by its
depth (IO: through `sync.trees.TreeStore`).

Both produce the canonical tree of their listing (`core.treepages`), so a device that
updates and one that builds the same listing from scratch write the same keys. Every
node is uploaded before the root key is returned: a head may name it at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import TypeVar

import anyio
import anyio.abc
import msgspec

from dropbeard.core.paths import validate_path
from dropbeard.core.tree import Node, TreeEntry
from dropbeard.core.treepages import (
    DirectoryBuild,
    DirectoryBuilder,
    apply_changes,
    build_directory,
)
from dropbeard.core.treesplice import NeedNodes, UnevenPages, lookup_paged, splice_directory
from dropbeard.sync.treeread import MAX_PAGE_LEVELS, folder_entries
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.workers import first_error

NodeBytes = tuple[str, bytes]
T = TypeVar("T")
#: Paths handed to a worker thread at a time by `build` (encoding and hashing are CPU).
BUILD_BATCH = 2000


class _Changes(msgspec.Struct):
    """The changes inside one folder: to its children, and further down."""

    here: dict[str, TreeEntry | None] = msgspec.field(default_factory=dict)
    below: dict[str, _Changes] = msgspec.field(default_factory=dict)

    def adds_anything(self) -> bool:
        return any(e is not None for e in self.here.values()) or any(
            c.adds_anything() for c in self.below.values()
        )


def _grouped(changes: Mapping[str, TreeEntry | None]) -> _Changes:
    top = _Changes()
    for path, entry in changes.items():
        validate_path(path)
        *folders, name = path.split("/")
        if entry is not None and entry.name != name:
            raise ValueError(f"the entry for {path!r} is named {entry.name!r}")
        at = top
        for folder in folders:
            at = at.below.setdefault(folder, _Changes())
        at.here[name] = entry
    return top


async def update(
    trees: TreeStore, old_root: str | None, changes: Mapping[str, TreeEntry | None]
) -> str:
    """The root key of tree `old_root` (None: empty) with `changes` applied: path -> new
    entry, or None to delete it (a folder with everything in it). A folder's `tree` is
    filled in here; a folder that is new (or was not one) starts empty, its children
    arriving as paths in `changes`. Only nodes on changed paths are rebuilt, and only
    those not already in the bucket are uploaded. ValueError if a change needs a folder
    the tree does not have."""
    written: list[NodeBytes] = []
    grouped = _grouped(changes)
    root = await _update_folder(trees, "", old_root, grouped, written)
    await trees.write(written)
    return root


async def _update_folder(
    trees: TreeStore, path: str, key: str | None, changes: _Changes, out: list[NodeBytes]
) -> str:
    touched = changes.here.keys() | changes.below.keys()
    folder = _OldFolder(trees, key)
    await folder.open()
    old = await folder.named(touched)
    result: dict[str, TreeEntry | None] = {}
    for name in sorted(touched):
        child = f"{path}/{name}" if path else name
        new = await _new_entry(trees, child, old.get(name), changes, name, out)
        if new != old.get(name):
            result[name] = new
    if not result and key is not None:
        return key
    built = await folder.rebuilt(result)
    out += built.nodes
    return built.key


class _OldFolder:
    """A folder as the bucket holds it (`key`; None: a new folder), read only as far as
    an update needs: of a paged folder, the nodes on the changed names' paths
    (`core.treesplice`)."""

    def __init__(self, trees: TreeStore, key: str | None) -> None:
        self.trees = trees
        self.key = key
        self.paged = False
        self.entries: list[TreeEntry] = []  # all of them, when not paged
        self.nodes: dict[str, Node] = {}  # the nodes of a paged one read so far

    async def open(self) -> None:
        if self.key is not None:
            top = await self.trees.node(self.key)
            if top.pages is None:
                self.entries = list(top.entries or [])
            else:
                self.paged, self.nodes[self.key] = True, top

    async def named(self, names: Iterable[str]) -> dict[str, TreeEntry]:
        """Its entries at `names` (those it has)."""
        wanted = set(names)
        if self.paged:
            assert self.key is not None
            key = self.key
            try:
                return await self._until(
                    lambda: lookup_paged(key, self.nodes, wanted, MAX_PAGE_LEVELS)
                )
            except UnevenPages:
                await self._whole()
        return {e.name: e for e in self.entries if e.name in wanted}

    async def rebuilt(self, changes: Mapping[str, TreeEntry | None]) -> DirectoryBuild:
        """Its nodes with `changes` applied, reusing every node they leave alone."""
        if self.paged:
            assert self.key is not None
            key = self.key
            try:
                return await self._until(
                    lambda: splice_directory(key, self.nodes, changes, MAX_PAGE_LEVELS)
                )
            except UnevenPages:
                await self._whole()
        return build_directory(apply_changes(self.entries, changes))

    async def _until(self, step: Callable[[], T | NeedNodes]) -> T:
        """`step`'s answer once the nodes it asks for are read."""
        while True:
            result = step()
            if not isinstance(result, NeedNodes):
                return result
            keys = [k for k in result.keys if k not in self.nodes]
            assert keys, "asked again for nodes already read"
            await self.trees.prefetch(keys)
            for k in keys:
                self.nodes[k] = await self.trees.node(k)

    async def _whole(self) -> None:
        """Read every entry: it is paged, but not as dropbeard pages (another writer's)."""
        assert self.key is not None
        self.paged = False
        self.entries = [e async for e in folder_entries(self.trees, self.key)]


async def _new_entry(
    trees: TreeStore,
    path: str,
    old: TreeEntry | None,
    changes: _Changes,
    name: str,
    out: list[NodeBytes],
) -> TreeEntry | None:
    """What the folder holds at `name` after the changes at and below it."""
    inside = changes.below.get(name)
    if name in changes.here:
        new = changes.here[name]
        if new is None or new.type != "dir":
            if inside is not None and inside.adds_anything():
                raise ValueError(f"{path!r} is not a folder, yet changes add paths in it")
            return new
        before = old.tree if old is not None and old.type == "dir" else None
        if inside is None and before is not None:
            return msgspec.structs.replace(new, tree=before)  # what it holds is unchanged
        key = await _update_folder(trees, path, before, inside or _Changes(), out)
        return msgspec.structs.replace(new, tree=key)
    assert inside is not None
    if old is None or old.type != "dir" or old.tree is None:
        if inside.adds_anything():
            raise ValueError(f"{path!r} is not a folder in the tree, yet changes add paths in it")
        return old
    key = await _update_folder(trees, path, old.tree, inside, out)
    return msgspec.structs.replace(old, tree=key)


# --- building from scratch -------------------------------------------------------------


class _Open(msgspec.Struct):
    path: str
    entry: TreeEntry | None
    builder: DirectoryBuilder = msgspec.field(default_factory=DirectoryBuilder)


class _Builder:
    """The folders open while paths arrive in tree order: one per level of depth."""

    def __init__(self) -> None:
        self.stack = [_Open("", None)]

    def feed(self, items: list[tuple[str, TreeEntry]]) -> list[NodeBytes]:
        """Add these paths; the nodes completed (ValueError if out of tree order)."""
        done: list[NodeBytes] = []
        for path, entry in items:
            parent, _, name = path.rpartition("/")
            if entry.name != name:
                raise ValueError(f"the entry for {path!r} is named {entry.name!r}")
            while self.stack[-1].path != parent:
                if len(self.stack) == 1:
                    raise ValueError(f"{path!r} is not in tree order, or its folder is missing")
                done += self._close()
            if entry.type == "dir":
                validate_path(path)
                self.stack.append(_Open(path, entry))
            else:
                done += self.stack[-1].builder.add(entry)
        return done

    def _close(self) -> list[NodeBytes]:
        folder = self.stack.pop()
        built = folder.builder.finish()
        assert folder.entry is not None
        entry = msgspec.structs.replace(folder.entry, tree=built.key)
        return built.nodes + self.stack[-1].builder.add(entry)

    def finish(self) -> tuple[str, list[NodeBytes]]:
        done: list[NodeBytes] = []
        while len(self.stack) > 1:
            done += self._close()
        built = self.stack[0].builder.finish()
        return built.key, done + built.nodes


async def build(
    trees: TreeStore,
    items: Iterable[tuple[str, TreeEntry]] | AsyncIterable[tuple[str, TreeEntry]],
) -> str:
    """The root key of the tree holding exactly `items`, (path, entry) in tree order
    (`core.treediff.tree_order`), folders before what they hold. Memory holds one open
    folder per level (a page and a list of pages each), not every path; nodes are
    uploaded while the build goes on. ValueError for paths out of order."""
    builder = _Builder()
    send, receive = anyio.create_memory_object_stream[NodeBytes](max_buffer_size=64)
    receivers = [receive.clone() for _ in range(trees.concurrency)]
    receive.close()

    async def upload(mine: anyio.abc.ObjectReceiveStream[NodeBytes]) -> None:
        async with mine:
            async for node in mine:
                await trees.write([node], absent=True)

    async def produce() -> str:
        async with send:
            batch: list[tuple[str, TreeEntry]] = []
            async for item in _each(items):
                batch.append(item)
                if len(batch) == BUILD_BATCH:
                    for node in await anyio.to_thread.run_sync(fed, batch):
                        await send.send(node)
                    batch = []
            for node in await anyio.to_thread.run_sync(fed, batch):
                await send.send(node)
            root, rest = await anyio.to_thread.run_sync(finished)
            for node in rest:
                await send.send(node)
        return root

    # (in a worker thread) the nodes done, less those known to be in the bucket
    def fed(batch: list[tuple[str, TreeEntry]]) -> list[NodeBytes]:
        return list(trees.absent(builder.feed(batch)).items())

    def finished() -> tuple[str, list[NodeBytes]]:
        root, rest = builder.finish()
        return root, list(trees.absent(rest).items())

    with first_error():
        async with anyio.create_task_group() as tg:
            for mine in receivers:
                tg.start_soon(upload, mine)
            root = await produce()
    return root


async def _each(
    items: Iterable[tuple[str, TreeEntry]] | AsyncIterable[tuple[str, TreeEntry]],
) -> AsyncIterable[tuple[str, TreeEntry]]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
