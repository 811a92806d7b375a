"""Publishing this device's tree (dropbeard.sync.treepublish) through whole passes on a real
root and a LocalStore remote: an edit rewrites only the nodes on its path, an idle pass
writes nothing, the tree lists exactly what the agreed bases publish, the snapshot counts
what it lists, and a last tree that cannot be read is published anew."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import msgspec
import pytest

from dropbeard.cli.main import main
from dropbeard.core.chunking import Chunk, MiB
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Delete, decode_head, decode_snapshot
from dropbeard.core.plan import Base
from dropbeard.core.summary import Summary
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online, root_lock
from dropbeard.sync.state import State
from tests.onepass import agreed_entries, run_one_pass
from tests.treeio import published_listing

KEYS = RootKeys("r1")
ME = "a"


class Recording(CountingStore):
    """Counts requests, and records the key of every write."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.written: list[str] = []

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.written.append(key)
        return await super().put(key, data, sha256=sha256)

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.written.append(key)
        return await super().put_if_absent(key, data, sha256=sha256)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    (tmp_path / "remote").mkdir()
    args = ["init", str(folder), "--remote", str(tmp_path / "remote"), "--root-id", "r1"]
    assert main([*args, "--device-id", ME, "-q"]) == 0
    return folder


def one_pass(
    root: Path, only: Iterable[str] | None = None, at: datetime | None = None
) -> tuple[Summary, Recording]:
    """One pass (over `only`, as the daemon runs one after watcher events; None: the
    whole root; at time `at`, else now), checked against a full reconcile; its summary
    and what it asked."""
    store = Recording(LocalStore(root.parent / "remote"))
    opts = PassOptions(only=None if only is None else frozenset(only), check_full=True)
    if at is not None:
        opts.now = lambda: at
    return run_one_pass(root, store, opts), store


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def listed(root: Path) -> dict[str, tuple[str, str | None, dict[str, int]]]:
    """What this device's head lists: path -> (type, sha256, version)."""
    found = anyio.run(published_listing, LocalStore(root.parent / "remote"), KEYS, ME)
    return {p: (e.type, e.sha256, e.version) for p, e in found.items()}


def agreed(root: Path) -> dict[str, tuple[str, str | None, dict[str, int]]]:
    """What the agreed bases in state.sqlite publish, in the same shape."""
    return {p: (e.type, e.sha256, e.version) for p, e in agreed_entries(root).items()}


def snapshot_counts(root: Path) -> tuple[int, int]:
    remote = LocalStore(root.parent / "remote")

    async def go() -> tuple[int, int]:
        head = decode_head(await remote.get(KEYS.head(ME)), "head")
        assert head.snapshot is not None
        key = KEYS.snapshot(ME, head.snapshot)
        snapshot = decode_snapshot(await remote.get(key), key)
        return snapshot.files, snapshot.bytes

    return anyio.run(go)


def files_in(root: Path) -> tuple[int, int]:
    """The files (not symlinks) in the root, and their bytes."""
    found = [p for p in root.rglob("*") if ".dropbear" not in p.parts]
    sizes = [p.stat().st_size for p in found if p.is_file() and not p.is_symlink()]
    return len(sizes), sum(sizes)


def test_one_edit_three_folders_deep_writes_its_blob_four_nodes_a_snapshot_and_a_head(
    root: Path,
) -> None:
    for i in range(30):
        write(root, f"a/b{i % 3}/c{i % 5}/f{i}.txt", f"file {i}\n")
    one_pass(root)

    write(root, "a/b1/c1/f1.txt", "edited\n")
    summary, store = one_pass(root, ["a/b1/c1/f1.txt"])

    trees = [k for k in store.written if k.startswith(KEYS.trees_prefix)]
    assert len(trees) == 4  # the root, a, a/b1, a/b1/c1: one node per level
    assert [k for k in store.written if k not in trees] == [
        KEYS.blob(listed(root)["a/b1/c1/f1.txt"][1] or ""),
        KEYS.snapshot(ME, summary.snapshot or ""),
        KEYS.head(ME),
    ]
    levels = 4
    assert sum(store.counts.values()) <= 2 * levels + 4, store.counts
    assert listed(root) == agreed(root)


def test_an_idle_pass_writes_nothing(root: Path) -> None:
    write(root, "docs/a.txt", "a\n")
    one_pass(root)

    summary, store = one_pass(root)

    assert summary.snapshot is None and store.written == []


def test_the_tree_lists_what_the_agreed_bases_publish_through_every_kind_of_change(
    root: Path,
) -> None:
    write(root, "keep/1.txt", "1\n")
    write(root, "gone/2.txt", "2\n")
    write(root, "moved/3.txt", "3\n")
    (root / "link").symlink_to("keep/1.txt")
    one_pass(root)
    assert listed(root) == agreed(root) and snapshot_counts(root) == files_in(root)

    shutil.rmtree(root / "gone")
    (root / "moved").rename(root / "renamed")
    write(root, "keep/1.txt", "1, longer now\n")
    (root / "link").unlink()
    (root / "link").mkdir()
    write(root, "link/inside.txt", "a folder where a link was\n")
    for i in range(300):  # a folder paged into several nodes
        write(root, f"many/{i:03d}.txt", f"{i}\n")
    one_pass(root)
    assert listed(root) == agreed(root) and snapshot_counts(root) == files_in(root)
    assert {"gone", "gone/2.txt", "moved/3.txt"}.isdisjoint(listed(root))

    for i in range(0, 300, 7):
        (root / f"many/{i:03d}.txt").unlink()
    one_pass(root, ["many"])
    assert listed(root) == agreed(root) and snapshot_counts(root) == files_in(root)


def test_a_last_tree_that_cannot_be_read_is_published_anew_from_the_index(root: Path) -> None:
    """Its nodes gone from the bucket and the node cache (a damaged bucket): the next
    publish builds the tree again from what the agreed bases publish, saying so once."""
    write(root, "d/a.txt", "a\n")
    write(root, "b.txt", "b\n")
    one_pass(root)
    remote = root.parent / "remote"
    head = decode_head((remote / KEYS.head(ME)).read_bytes(), "head")
    assert head.tree is not None
    (remote / KEYS.tree(head.tree)).unlink()
    shutil.rmtree(RootPaths(root).trees)

    write(root, "c.txt", "c\n")
    summary, _ = one_pass(root)

    assert summary.snapshot is not None and summary.problems == 1
    assert sorted(listed(root)) == ["b.txt", "c.txt", "d", "d/a.txt"]
    assert listed(root) == agreed(root)
    again, _ = one_pass(root)
    assert again.problems == 0 and again.snapshot is None


def test_a_head_is_rewritten_for_its_seen_marks_alone_at_most_every_ten_minutes(
    root: Path,
) -> None:
    """SPEC 1.3: a device whose tree did not change still tells the others how far it
    processed them, without a write per pass."""
    other = root.parent / "other"
    args = ["init", str(other), "--remote", str(root.parent / "remote"), "--root-id", "r1"]
    assert main([*args, "--device-id", "b", "-q"]) == 0
    write(root, "mine.txt", "a's\n")
    start = datetime.now(UTC).replace(microsecond=0)
    one_pass(root, at=start)
    b_snapshot = one_pass(other, at=start)[0].snapshot  # b takes a's file: its listing

    got, store = one_pass(root, at=start + timedelta(minutes=1))  # a's tree: unchanged
    assert got.snapshot is None and b_snapshot is not None and store.written == []

    later, store = one_pass(root, at=start + timedelta(minutes=11))
    assert later.snapshot is None and store.written == [KEYS.head(ME)]
    head = decode_head((root.parent / "remote" / KEYS.head(ME)).read_bytes(), "head")
    assert head.seen["b"].snapshot == b_snapshot
    assert head.tree is not None and sorted(listed(root)) == ["mine.txt"]
    assert one_pass(root, at=start + timedelta(minutes=30))[1].written == []  # said already


def test_a_full_reconcile_makes_the_tree_what_it_lists_even_if_the_bases_disagree(
    root: Path,
) -> None:
    """The tree a device published lists what its bases publish, but for state taken back
    from the bucket (or restored, or damaged): a full reconcile after taking state back, or
    when asked for (`--full-reconcile`), compares its listing with the tree itself, so a
    path the bases no longer publish leaves the tree too."""
    write(root, "keep.txt", "kept\n")
    write(root, "stale.txt", "listed, but the index forgot it\n")
    one_pass(root)
    (root / "stale.txt").unlink()
    state = State.open(RootPaths(root).state)
    try:  # the index says the delete was agreed already: no tombstone, no change
        stale = msgspec.json.decode(state.bases()["stale.txt"], type=Base)
        assert stale.entry is not None
        gone = Delete(path="stale.txt", type="file", version={ME: 99}, sha256=stale.entry.sha256)
        state.put_bases([("stale.txt", Base(deleted=gone))])
    finally:
        state.close()
    assert "stale.txt" in listed(root)

    store = Recording(LocalStore(root.parent / "remote"))

    async def full() -> Summary:
        paths = RootPaths(root)
        cfg, opened = open_online(paths)
        try:
            with root_lock(paths):
                opts = PassOptions(full_reconcile=True)
                return await run_pass(paths, cfg, opened, store, opts)
        finally:
            opened.close()

    assert anyio.run(full).snapshot is not None
    assert sorted(listed(root)) == ["keep.txt"] and listed(root) == agreed(root)


def test_a_renamed_file_costs_no_request_for_its_blob(root: Path) -> None:
    """Its bytes are the blob an agreed path of this device's listing references: in the
    bucket, reached by this device's head (`State.holds_blob`); nothing asks for it."""
    write(root, "docs/report.txt", "the same bytes, renamed\n")
    one_pass(root)
    (root / "docs/report.txt").rename(root / "report-final.txt")

    summary, store = one_pass(root)

    assert summary.snapshot is not None and summary.uploaded == 0
    assert not [k for k in store.written if k.startswith(KEYS.blobs_prefix)]
    assert store.counts["head"] == 0 and "put_file" not in store.counts


def test_a_renamed_large_file_costs_no_request_for_its_chunks(root: Path) -> None:
    """A file stored in chunks is in the bucket as its chunks, reached by this device's
    head (`State.holds_blob` knows a listed file's chunks): renamed, nothing asks for them,
    and the new path is listed with the same chunk list."""
    (root / "media").mkdir()
    (root / "media/film.bin").write_bytes(random.Random(5).randbytes(17 * MiB))
    first, store = one_pass(root)
    chunks = listed_chunks(root)
    sent = [k for k in store.written if k.startswith(KEYS.blobs_prefix)]
    assert first.snapshot is not None and len(sent) == len(chunks["media/film.bin"] or []) >= 2
    (root / "media/film.bin").rename(root / "film-final.bin")

    summary, store = one_pass(root)

    assert summary.snapshot is not None and summary.uploaded == 0
    assert not [k for k in store.written if k.startswith(KEYS.blobs_prefix)]
    assert store.counts["head"] == 0 and "put_file" not in store.counts
    assert listed_chunks(root) == {"film-final.bin": chunks["media/film.bin"], "media": None}


def listed_chunks(root: Path) -> dict[str, list[Chunk] | None]:
    found = anyio.run(published_listing, LocalStore(root.parent / "remote"), KEYS, ME)
    return {p: e.chunks for p, e in found.items()}
