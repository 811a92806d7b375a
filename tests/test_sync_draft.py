"""The tree a pass publishes is written while its blobs go up (sync.treepublish
`while_drafting`): node PUTs overlap the blob PUTs, many at once, and still every node
and blob is in the bucket before the snapshot, and the snapshot before the head; a node
that cannot be written publishes nothing."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from dropbeard.cli.main import main
from dropbeard.core.errors import Unavailable
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import PassOptions
from tests.faults import FaultStore
from tests.onepass import run_one_pass
from tests.test_sync_publication import EditsAfterTheScan
from tests.test_sync_treepublish import agreed, listed

KEYS = RootKeys("r1")
ME = "a"
FOLDERS = 24
#: How long a node PUT waits for a blob PUT to begin, and a blob PUT for a node PUT to
#: see it in flight (both start at once: only a pass that does not overlap them waits
#: this long, and fails). Long enough for a loaded machine's worker threads.
PATIENCE = 10.0
#: How long a blob PUT waits for a node PUT to see it: short, since a first sync sends
#: blobs ahead while it still scans (`sync.ahead`), before any node can be written, and
#: those would otherwise hold the pass up for all of PATIENCE.
BLOB_PATIENCE = 1.0


class Timeline(ForwardingStore):
    """Records the writes in flight: node PUTs (keys under trees/), blob PUTs, and the
    snapshot and head. The first PUTs of each kind meet: a node PUT waits (at most
    `PATIENCE`) until some blob PUT has begun, and a blob PUT (at most `BLOB_PATIENCE`)
    until some node PUT saw a blob in flight, so node writes that could go up beside the
    blobs are seen doing so whichever kind a busy machine lets start first."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.nodes_now = self.blobs_now = 0
        self.most_nodes = 0
        self.nodes_beside_blobs = 0  # node PUTs begun while a blob PUT was in flight
        self.order: list[str] = []  # "node", "blob", "snapshot", "head": as each ended
        self.nodes: list[str] = []  # the key of every node PUT
        self.blob_begun = anyio.Event()
        self.blob_seen = anyio.Event()  # a node PUT began while a blob PUT was in flight

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if key.startswith(KEYS.trees_prefix):
            self.nodes_now += 1
            self.most_nodes = max(self.most_nodes, self.nodes_now)
            self.nodes.append(key)
            try:
                with anyio.move_on_after(PATIENCE):
                    await self.blob_begun.wait()
                if self.blobs_now > 0:
                    self.nodes_beside_blobs += 1
                    self.blob_seen.set()
                await anyio.sleep(0.01)
                return await super().put_if_absent(key, data, sha256=sha256)
            finally:
                self.nodes_now -= 1
                self.order.append("node")
        if key.startswith(KEYS.blobs_prefix):
            self.blobs_now += 1
            self.blob_begun.set()
            try:
                with anyio.move_on_after(BLOB_PATIENCE):
                    await self.blob_seen.wait()
                return await super().put_if_absent(key, data, sha256=sha256)
            finally:
                self.blobs_now -= 1
                self.order.append("blob")
        etag = await super().put_if_absent(key, data, sha256=sha256)
        if "/snapshots/" in key:
            self.order.append("snapshot")
        return etag

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        etag = await super().put(key, data, sha256=sha256)
        if key == KEYS.head(ME):
            self.order.append("head")
        return etag


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    (tmp_path / "remote").mkdir()
    args = ["init", str(folder), "--remote", str(tmp_path / "remote"), "--root-id", "r1"]
    assert main([*args, "--device-id", ME, "-q"]) == 0
    for i in range(FOLDERS):
        for j in range(3):
            write(folder, f"top{i % 4}/d{i}/f{j}.txt", f"file {i} {j}\n")
    run_one_pass(folder, LocalStore(tmp_path / "remote"), PassOptions())
    return folder


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def edit_every_folder(root: Path) -> None:
    for i in range(FOLDERS):
        write(root, f"top{i % 4}/d{i}/f0.txt", f"edited {i}\n")
        write(root, f"top{i % 4}/d{i}/new.txt", f"new in {i}\n")


def test_a_publish_writes_its_nodes_beside_its_blobs_many_at_once_before_the_snapshot(
    root: Path,
) -> None:
    edit_every_folder(root)
    store = Timeline(LocalStore(root.parent / "remote"))
    run_one_pass(root, store, PassOptions())

    assert store.most_nodes > 1
    assert store.nodes_beside_blobs > 0
    order = store.order
    assert order.count("node") == FOLDERS + 4 + 1  # each folder, each top folder, the root
    assert order.count("blob") == 2 * FOLDERS
    assert order[-2:] == ["snapshot", "head"]
    assert listed(root) == agreed(root)
    assert sorted(listed(root)) == sorted(
        [f"top{t}" for t in range(4)]
        + [f"top{i % 4}/d{i}" for i in range(FOLDERS)]
        + [f"top{i % 4}/d{i}/{n}" for i in range(FOLDERS) for n in ("f0.txt", "f1.txt", "f2.txt")]
        + [f"top{i % 4}/d{i}/new.txt" for i in range(FOLDERS)]
    )


def test_a_node_that_cannot_be_written_publishes_no_snapshot_and_no_head(root: Path) -> None:
    remote = LocalStore(root.parent / "remote")
    head_before = anyio.run(remote.get, KEYS.head(ME))
    snapshots_before = anyio.run(_keys, remote, KEYS.snapshots_prefix(ME))
    edit_every_folder(root)
    faults = FaultStore(remote)
    faults.fail("put_if_absent", prefix=KEYS.trees_prefix, skip=5)

    with pytest.raises(Unavailable):
        run_one_pass(root, faults, PassOptions())

    assert faults.fired["put_if_absent"] == 1
    assert anyio.run(remote.get, KEYS.head(ME)) == head_before
    assert anyio.run(_keys, remote, KEYS.snapshots_prefix(ME)) == snapshots_before
    run_one_pass(root, remote, PassOptions())  # the next pass publishes it all
    assert listed(root) == agreed(root)
    assert listed(root)["top1/d1/f0.txt"][1] is not None
    assert len([p for p in listed(root) if p.endswith("new.txt")]) == FOLDERS


def test_a_file_changed_while_uploaded_is_published_as_before_not_as_drafted(
    root: Path,
) -> None:
    edit_every_folder(root)
    store = Timeline(LocalStore(root.parent / "remote"))
    before = listed(root)["top2/d2/f0.txt"]

    def edit() -> None:  # after the scan hashed it, before its blob is read
        write(root, "top2/d2/f0.txt", "edited again while the pass runs\n")

    summary = run_one_pass(root, store, PassOptions(meter=EditsAfterTheScan(edit)))

    assert summary.problems == 1  # changed_while_reading: synced next pass
    assert store.nodes_beside_blobs > 0  # the draft had listed its scanned version
    # then the tree was updated again from the new plan (whose version counters moved
    # too): more nodes than one tree has, and none written twice
    assert len(store.nodes) > FOLDERS + 4 + 1
    assert len(set(store.nodes)) == len(store.nodes)
    assert listed(root) == agreed(root)
    assert listed(root)["top2/d2/f0.txt"] == before
    assert "top2/d2/new.txt" in listed(root)
    run_one_pass(root, LocalStore(root.parent / "remote"), PassOptions())
    assert listed(root)["top2/d2/f0.txt"] != before
    assert listed(root) == agreed(root)


async def _keys(store: Store, prefix: str) -> list[str]:
    return [info.key async for page in store.list(prefix) for info in page.objects]


@pytest.mark.parametrize("batch_paths", [None, 10], ids=["one pass", "in batches"])
def test_a_first_publish_builds_its_whole_tree_beside_its_blobs(
    tmp_path: Path, batch_paths: int | None, small_ahead: int
) -> None:
    """A first sync has no last tree to update: its whole tree is built while the blobs
    go up (in one pass, or batch by batch), and the publish writes no node again."""
    folder = tmp_path / "root"
    (tmp_path / "remote").mkdir()
    args = ["init", str(folder), "--remote", str(tmp_path / "remote"), "--root-id", "r1"]
    assert main([*args, "--device-id", ME, "-q"]) == 0
    for i in range(FOLDERS):  # larger than a first sync sends while it hashes (sync.ahead)
        for j in range(3):
            write(folder, f"top{i % 4}/d{i}/f{j}.txt", f"file {i} {j}\n" * 7000)
    store = Timeline(LocalStore(tmp_path / "remote"))
    opts = PassOptions() if batch_paths is None else PassOptions(batch_paths=batch_paths)

    run_one_pass(folder, store, opts)

    assert store.nodes_beside_blobs > 0
    assert len(set(store.nodes)) == len(store.nodes)  # no node written twice
    assert store.order.count("blob") == 3 * FOLDERS
    assert store.order[-2:] == ["snapshot", "head"]
    if batch_paths is None:
        assert store.order.count("node") == FOLDERS + 4 + 1
        assert store.order.count("head") == 1
    assert listed(folder) == agreed(folder)
    assert len([p for p in listed(folder) if p.endswith(".txt")]) == 3 * FOLDERS
