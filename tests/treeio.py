"""Test support for the tree IO layer: a `bucket` fixture (a local directory, then a
prefix in SeaweedFS), crafted nodes put straight into a store, and path maps built and
read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from dropbeard.core.keys import RootKeys
from dropbeard.core.tree import TreeEntry, node_key
from dropbeard.core.treediff import tree_order
from dropbeard.store.base import Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.treeread import walk
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import build

KEYS = RootKeys("notes")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> CountingStore:
    """A fresh, empty store, counted: a local directory, then a SeaweedFS prefix."""
    if request.param == "s3":
        return CountingStore(request.getfixturevalue("s3_store"))
    root = tmp_path / "bucket"
    root.mkdir()
    return CountingStore(LocalStore(root))


def local_trees(tmp: Path, *, cache: bool = False) -> tuple[TreeStore, CountingStore]:
    (tmp / "bucket").mkdir(exist_ok=True)
    store = CountingStore(LocalStore(tmp / "bucket"))
    return TreeStore(store, KEYS, NodeCache(tmp / "cache") if cache else None), store


def fresh(trees: TreeStore) -> TreeStore:
    """Another device's view of the same bucket: nothing cached."""
    return TreeStore(trees.store, trees.keys)


async def put_node(store: Store, node: Any) -> str:
    """Put `node` (JSON-able, or bytes) into the store under its real key; its digest."""
    data = node if isinstance(node, bytes) else json.dumps(node).encode()
    digest = node_key(data)
    await store.put(KEYS.tree(digest), data)
    return digest


def bare(entry: TreeEntry) -> TreeEntry:
    """`entry` without the key of a folder's node (path maps are compared without it)."""
    return entry if entry.tree is None else msgspec.structs.replace(entry, tree=None)


def in_tree_order(paths: Mapping[str, TreeEntry]) -> list[tuple[str, TreeEntry]]:
    return sorted(paths.items(), key=lambda item: tree_order(item[0]))


async def build_map(trees: TreeStore, paths: Mapping[str, TreeEntry]) -> str:
    return await build(trees, in_tree_order(paths))


async def read_map(trees: TreeStore, root: str) -> list[tuple[str, TreeEntry]]:
    return [(path, bare(entry)) async for path, entry in walk(trees, root)]


def run(fn: Any, *args: Any) -> Any:
    """Run an async function to completion from a (Hypothesis) sync test."""
    return anyio.run(fn, *args)


async def published_listing(store: Store, keys: RootKeys, device: str) -> dict[str, TreeEntry]:
    """Every (path, entry) of the tree `device`'s head names (every node verified)."""
    from dropbeard.core.model import decode_head

    head = decode_head(await store.get(keys.head(device)), keys.head(device))
    if head.tree is None:
        return {}
    return {p: e async for p, e in walk(TreeStore(store, keys), head.tree)}
