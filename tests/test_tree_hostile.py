"""Hostile trees in a bucket: each is refused by walk, diff and lookup with one line
naming the node at fault (its device-independent key), never a traceback or a hang."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dropbeard.core.errors import DropbeardError, FormatError, IntegrityError, NotFound
from dropbeard.core.tree import Node, decode_node, entries_node, node_key
from dropbeard.store.base import Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.treeread import MAX_DEPTH, MAX_PAGE_LEVELS, diff, lookup, walk
from dropbeard.sync.trees import TreeStore
from tests.treegen import file_entry, sha
from tests.treeio import KEYS, bucket, build_map, put_node

__all__ = ["bucket"]
pytestmark = pytest.mark.anyio

FILE = {
    "name": "a",
    "type": "file",
    "size": 0,
    "mode": 420,
    "mtime_ns": 0,
    "sha256": sha(""),
    "version": {"pc": 1},
}


def folder(name: str, tree: str) -> dict[str, Any]:
    return {"name": name, "type": "dir", "mode": 493, "version": {"pc": 1}, "tree": tree}


def listing(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"format": 2, "entries": list(entries)}


def index(*pages: tuple[str, str]) -> dict[str, Any]:
    return {"format": 2, "pages": [{"first": f, "tree": t} for f, t in pages]}


Reader = Callable[[TreeStore, str], Awaitable[Any]]


async def by_walk(trees: TreeStore, root: str) -> None:
    [x async for x in walk(trees, root)]


async def by_diff(trees: TreeStore, root: str) -> None:
    empty = await put_node(trees.store, listing())
    [x async for x in diff(trees, empty, root)]


READERS = [pytest.param(by_walk, id="walk"), pytest.param(by_diff, id="diff")]


async def refused(
    store: Store, root: str, read: Reader, error: type[DropbeardError], culprit: str, why: str
) -> None:
    with pytest.raises(error) as caught:
        await read(TreeStore(store, KEYS), root)
    message = str(caught.value)
    assert KEYS.tree(culprit) in message, message
    assert why in message
    assert "\n" not in message


@pytest.mark.parametrize("read", READERS)
async def test_a_node_whose_bytes_do_not_match_its_key(bucket: CountingStore, read: Reader) -> None:
    inner = await put_node(bucket, listing(FILE))
    root = await put_node(bucket, listing(folder("d", inner)))
    await bucket.put(KEYS.tree(inner), entries_node([file_entry("other")]))
    await refused(bucket, root, read, IntegrityError, inner, "not its key")


@pytest.mark.parametrize("name", ["a/b", "..", ".", ""])
@pytest.mark.parametrize("read", READERS)
async def test_a_name_that_is_not_one_segment(
    bucket: CountingStore, read: Reader, name: str
) -> None:
    inner = await put_node(bucket, listing(FILE | {"name": name}))
    root = await put_node(bucket, listing(folder("d", inner)))
    await refused(bucket, root, read, FormatError, inner, "entry 0")


@pytest.mark.parametrize("read", READERS)
async def test_dropbear_in_the_root(bucket: CountingStore, read: Reader) -> None:
    inner = await put_node(bucket, listing(FILE))
    root = await put_node(bucket, listing(folder(".dropbear", inner)))
    await refused(bucket, root, read, FormatError, root, "the root lists '.dropbear'")
    fine = await put_node(bucket, listing(folder("x", root)))  # below the root it is a name
    assert [p async for p, _ in walk(TreeStore(bucket, KEYS), fine)][:2] == [
        "x",
        "x/.dropbear",
    ]


@pytest.mark.parametrize("read", READERS)
async def test_page_levels_beyond_the_bound(bucket: CountingStore, read: Reader) -> None:
    key = await put_node(bucket, listing(FILE))
    chain = []
    for _ in range(MAX_PAGE_LEVELS + 2):  # a 10-level page nesting
        key = await put_node(bucket, index(("a", key)))
        chain.append(key)
    root = await put_node(bucket, listing(folder("deep", key)))
    culprit = chain[1]  # the ninth index from the top
    await refused(bucket, root, read, FormatError, culprit, f"more than {MAX_PAGE_LEVELS} levels")
    with pytest.raises(FormatError, match="levels of pages"):
        await lookup(TreeStore(bucket, KEYS), root, "deep/a")
    allowed = await put_node(bucket, listing(folder("deep", chain[MAX_PAGE_LEVELS - 1])))
    assert [p async for p, _ in walk(TreeStore(bucket, KEYS), allowed)] == ["deep", "deep/a"]
    assert await lookup(TreeStore(bucket, KEYS), allowed, "deep/a") is not None


@pytest.mark.parametrize("read", READERS)
async def test_folders_nested_beyond_the_bound(tmp_path: Path, read: Reader) -> None:
    bucket = LocalStore(tmp_path)  # 258 folders: the reader's bound, not the store's
    key = await put_node(bucket, listing())
    chain = [key]
    for _ in range(MAX_DEPTH + 1):
        key = await put_node(bucket, listing(folder("a", key)))
        chain.append(key)
    too_deep = chain[-1]
    await refused(bucket, too_deep, read, FormatError, chain[0], f"deeper than {MAX_DEPTH}")
    deepest = [p async for p, _ in walk(TreeStore(bucket, KEYS), chain[-2])][-1]
    assert deepest.count("/") + 1 == MAX_DEPTH


@pytest.mark.parametrize("read", READERS)
async def test_a_path_longer_than_4096_bytes(bucket: CountingStore, read: Reader) -> None:
    innermost = key = await put_node(bucket, listing(FILE))
    for _ in range(16):  # 16 folders of 255 bytes: 4095 bytes, and "/a" is too much
        key = await put_node(bucket, listing(folder("n" * 255, key)))
    await refused(bucket, key, read, FormatError, innermost, "longer than 4096 bytes")


@pytest.mark.parametrize("read", READERS)
async def test_an_absurdly_large_node(bucket: CountingStore, read: Reader) -> None:
    huge = b'{"format":2,"entries":[]' + b" " * (9 * 1024 * 1024) + b"}"
    inner = await put_node(bucket, huge)
    root = await put_node(bucket, listing(folder("d", inner)))
    await refused(bucket, root, read, FormatError, inner, "more than 8388608")


@pytest.mark.parametrize("read", READERS)
async def test_pages_that_do_not_fit_their_index(bucket: CountingStore, read: Reader) -> None:
    b_only = await put_node(bucket, listing(FILE | {"name": "b"}))
    a_and_c = await put_node(bucket, listing(FILE, FILE | {"name": "c"}))
    wrong_first = await put_node(bucket, index(("a", b_only)))
    overlapping = await put_node(bucket, index(("a", a_and_c), ("b", b_only)))
    for culprit, why in ((b_only, "does not start at its first"), (a_and_c, "runs past")):
        top = wrong_first if culprit == b_only else overlapping
        root = await put_node(bucket, listing(folder("d", top)))
        await refused(bucket, root, read, FormatError, culprit, why)


@pytest.mark.parametrize("read", READERS)
async def test_a_missing_node(bucket: CountingStore, read: Reader) -> None:
    gone = sha("never written")
    root = await put_node(bucket, listing(folder("d", gone)))
    await refused(bucket, root, read, NotFound, gone, "it is missing")


async def test_a_hostile_subtree_in_a_diff_against_a_good_tree(bucket: CountingStore) -> None:
    paths = {"a": file_entry("a"), "b": file_entry("b")}
    good = await build_map(TreeStore(bucket, KEYS), paths)
    bad_inner = await put_node(bucket, listing(FILE | {"name": "x/y"}))
    bad = await put_node(bucket, listing(FILE, FILE | {"name": "b"}, folder("c", bad_inner)))
    with pytest.raises(FormatError, match=KEYS.tree(bad_inner)):
        [d async for d in diff(TreeStore(bucket, KEYS), good, bad)]


# --- cycles: impossible with honest hashes, so read through a store that skips them -------


class Unhashed(TreeStore):
    """Serves crafted nodes by made-up keys, as if SHA-256 had a cycle in it."""

    def __init__(self, store: Store, nodes: dict[str, dict[str, Any]]) -> None:
        super().__init__(store, KEYS)
        self.nodes = nodes

    async def node(self, digest: str) -> Node:
        raw = json.dumps(self.nodes[digest]).encode()
        return decode_node(raw, node_key(raw), self.key(digest))


async def test_a_folder_that_holds_itself(tmp_path: Path) -> None:
    a, b = sha("a"), sha("b")
    trees = Unhashed(LocalStore(tmp_path), {a: listing(folder("b", b)), b: listing(folder("a", a))})
    with pytest.raises(FormatError, match=f"invalid tree {KEYS.tree(a)}: a cycle"):
        [x async for x in walk(trees, a)]


async def test_pages_that_lead_back_to_their_index(tmp_path: Path) -> None:
    top, page = sha("top"), sha("page")
    trees = Unhashed(LocalStore(tmp_path), {top: index(("a", page)), page: index(("a", top))})
    with pytest.raises(FormatError, match=f"invalid tree {KEYS.tree(page)}: a cycle"):
        [x async for x in walk(trees, top)]


@pytest.mark.parametrize("read", READERS)
async def test_a_few_nodes_naming_more_paths_than_the_bound(
    bucket: CountingStore, read: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty levels of two names for the same folder: 2**40 paths from 41 nodes."""
    monkeypatch.setattr("dropbeard.sync.treeread.MAX_PATHS", 1000)
    key = await put_node(bucket, listing(FILE))
    for _ in range(40):
        key = await put_node(bucket, listing(folder("a", key), folder("b", key)))
    await refused(bucket, key, read, FormatError, key, "more than 1000 paths")
