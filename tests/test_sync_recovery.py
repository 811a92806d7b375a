"""This device's own head read at the start of a pass, and taken back when it is ahead of
state.sqlite (dropbeard.sync.recovery), directly on a root and a LocalStore remote."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from dropbeard.cli.main import main
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Delete, Entry, TombstoneBatch, encode
from dropbeard.core.plan import Base
from dropbeard.core.summary import Summary
from dropbeard.core.treediff import to_tree_entry
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import run_pass
from dropbeard.sync.inputs import Loaded, load_last_pass
from dropbeard.sync.passrun import PassOptions, PassRun
from dropbeard.sync.publish import Listing, Published, publish
from dropbeard.sync.recovery import Recovered, recover_own_head
from dropbeard.sync.root import RootPaths, open_online, root_lock
from dropbeard.sync.state import State
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import update

pytestmark = pytest.mark.anyio

ME = "laptop"
KEYS = RootKeys("r1")
NOW = datetime(2026, 5, 22, 18, 5, tzinfo=UTC)
_BASE = msgspec.json.Decoder(Base)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes, version: dict[str, int]) -> Entry:
    return Entry(
        path=path, type="file", mode=0o644, version=version, size=len(data), mtime_ns=1,
        sha256=sha(data),
    )  # fmt: skip


@dataclass
class Device:
    """A root initialised through the CLI, its remote, and one pass's view of it."""

    root: Path
    remote: LocalStore

    def open(self, *, dry_run: bool = False, full: bool = False) -> tuple[PassRun, CountingStore]:
        paths = RootPaths(self.root)
        cfg, state = open_online(paths)
        store = CountingStore(self.remote)
        opts = PassOptions(dry_run=dry_run, full_reconcile=full)
        return PassRun.begin(paths, cfg, state, store, opts), store

    async def recover(self, *, dry_run: bool = False) -> tuple[Loaded, Recovered, CountingStore]:
        run, store = self.open(dry_run=dry_run)
        try:
            loaded = await load_last_pass(run)
            store.reset()
            return loaded, await recover_own_head(run, loaded), store
        finally:
            run.state.close()

    def state(self) -> State:
        return State.open(self.root / ".dropbear" / "state.sqlite")

    async def publish_behind_its_back(
        self, loaded: Loaded, entries: list[Entry], deletes: list[Delete]
    ) -> Published:
        """What a pass that died right after its head write leaves in the bucket: its tree
        (the last one with `entries` and `deletes` applied), snapshot and head."""
        changes = {e.path: to_tree_entry(e) for e in entries}
        changes.update((gone.path, None) for gone in deletes)
        tree = await update(TreeStore(self.remote, KEYS), loaded.last_tree, changes)
        return await publish(
            self.remote, KEYS, device_id=ME, listing=Listing(tree, 0, 0),
            tombstones=deletes, last=loaded.last_ids, seen={}, now=NOW,
        )  # fmt: skip


@pytest.fixture
def device(tmp_path: Path) -> Device:
    root, remote = tmp_path / "root", tmp_path / "remote"
    code = main(["init", str(root), "--remote", str(remote), "--root-id", "r1",
                 "--device-id", ME, "-q"])  # fmt: skip
    assert code == 0
    return Device(root, LocalStore(remote))


async def synced(device: Device, *files: str, full: bool = False) -> Summary:
    """One whole pass, as `dropbeard sync` runs it (`--full-reconcile` if `full`), after
    writing `files`."""
    return (await counted(device, *files, full=full))[0]


async def counted(device: Device, *files: str, full: bool = False) -> tuple[Summary, Counter[str]]:
    """`synced`, and the requests its pass made."""
    for name in files:
        (device.root / name).write_text(f"{name}\n")
    run, store = device.open(full=full)
    try:
        with root_lock(run.paths):
            done = await run_pass(run.paths, run.cfg, run.state, run.store, run.opts)
            return done, store.counts
    finally:
        run.state.close()


async def test_a_device_that_never_published_costs_one_read(device: Device) -> None:
    loaded, got, store = await device.recover()

    assert store.counts == {"get_if_changed": 1}
    assert got.loaded == loaded and got.problems == []


async def test_an_unchanged_head_costs_one_conditional_read(device: Device) -> None:
    await synced(device, "a.txt")

    loaded, got, store = await device.recover()

    assert store.counts == {"get_if_changed": 1}
    assert got.loaded == loaded and loaded.head_etag is not None


def meta(device: Device) -> dict[str, str | None]:
    state = device.state()
    try:
        keys = ("counter", "tombstone_seq", "reserved_seq", "last_snapshot", "last_tree")
        keys += ("head_etag",)
        return {k: state.get_meta(k) for k in keys}
    finally:
        state.close()


def pending(device: Device) -> set[str] | None:
    state = device.state()
    try:
        return state.pending()
    finally:
        state.close()


def bases(device: Device) -> dict[str, Base]:
    state = device.state()
    try:
        return {p: _BASE.decode(b) for p, b in state.bases().items()}
    finally:
        state.close()


async def crashed_publish(device: Device, loaded: Loaded) -> tuple[Published, list[Entry]]:
    """a.txt edited, new.txt added and x.txt deleted, published after `loaded` by a pass
    that died before its commit."""
    entries = [
        file_entry("a.txt", b"a, edited", {ME: loaded.counter + 2}),
        file_entry("new.txt", b"new", {ME: loaded.counter + 1}),
    ]
    x = bases(device)["x.txt"].entry
    assert x is not None
    gone = Delete(path="x.txt", type="file", version={ME: loaded.counter + 3}, sha256=x.sha256)
    published = await device.publish_behind_its_back(loaded, entries, [gone])
    return published, entries


async def test_a_head_ahead_of_the_state_is_taken_back_and_recorded(device: Device) -> None:
    await synced(device, "a.txt", "x.txt")
    before, _, _ = await device.recover()
    published, entries = await crashed_publish(device, before)

    _, got, _ = await device.recover()

    taken = got.loaded
    assert got.problems == []
    assert (taken.last_snapshot, taken.last_tree) == (
        published.snapshot,
        published.listing.tree,
    )
    assert taken.tombstone_seq == published.tombstone_seq == before.tombstone_seq + 1
    assert taken.counter == before.counter + 3
    assert taken.taken["a.txt"] == Base(entry=entries[0])
    assert taken.taken["new.txt"] == Base(entry=entries[1])
    deleted = taken.taken["x.txt"].deleted
    assert taken.taken["x.txt"].entry is None and deleted is not None
    assert deleted.version == {ME: before.counter + 3}
    # recorded: the next pass starts from it without reading anything again, and
    # reconciles every path against it (what the last pass left open is unknown)
    assert bases(device) == taken.taken
    assert taken.pending is None and pending(device) is None and taken.taken_back
    assert {k: v for k, v in meta(device).items() if k != "reserved_seq"} == {
        "counter": str(taken.counter),
        "tombstone_seq": str(taken.tombstone_seq),
        "last_snapshot": published.snapshot,
        "last_tree": published.listing.tree,
        "head_etag": published.head_etag,
    }
    state = device.state()
    assert state.holds_blob(sha(b"new")) and not state.holds_blob(sha(b"x.txt\n"))
    state.close()
    _, again, store = await device.recover()
    assert again.loaded == msgspec.structs.replace(taken, taken={}, taken_back=False)
    assert store.counts == {"get_if_changed": 1}


async def test_a_dry_run_takes_back_in_memory_only(device: Device) -> None:
    await synced(device, "a.txt", "x.txt")
    before, _, _ = await device.recover()
    published, _ = await crashed_publish(device, before)
    recorded = (meta(device), bases(device))

    _, got, _ = await device.recover(dry_run=True)

    assert got.loaded.last_snapshot == published.snapshot
    assert (meta(device), bases(device)) == recorded


async def test_batches_no_head_named_are_deleted_and_their_seqs_skipped(device: Device) -> None:
    """A pass that died between its batch and its head: the batch is an orphan no reader
    ever acted on. It is removed, and its seq (reserved) is never used again."""
    await synced(device, "a.txt")
    state = device.state()
    state.reserve(0, 1, "20200101T000000Z")
    state.close()
    orphan = KEYS.tombstone(ME, 1)
    batch = TombstoneBatch(device_id=ME, seq=1, created_at="2026-05-22T18:05:00Z", deletes=[])
    await device.remote.put(orphan, encode(batch))

    _, got, store = await device.recover()

    assert orphan not in [o.key async for page in device.remote.list("") for o in page.objects]
    assert store.counts["delete"] == 1
    assert got.loaded.tombstone_seq == got.loaded.seq_floor == 1
    assert meta(device)["tombstone_seq"] == meta(device)["reserved_seq"] == "1"
    _, settled, store = await device.recover()
    assert store.counts == {"get_if_changed": 1}  # done with: no listing any more
    assert settled.loaded.tombstone_seq == 1


async def test_a_pass_with_nothing_to_do_does_not_read_its_own_head(device: Device) -> None:
    await synced(device, "a.txt")
    await synced(device)  # the stat cache is settled

    idle, requests = await counted(device)
    assert idle.snapshot is None and requests == {"list_page": 1}, requests
    changed, requests = await counted(device, "b.txt")
    assert changed.snapshot is not None
    assert requests["get_if_changed"] == 1, requests  # read before it planned


async def test_ids_reserved_past_the_commit_make_even_an_idle_pass_read_its_head(
    device: Device,
) -> None:
    """A publish that reserved its ids and died (maybe after its head write, maybe leaving
    a tombstone batch) shows in state.sqlite: the next pass reads its head first."""
    await synced(device, "a.txt")
    await synced(device)
    loaded, _, _ = await device.recover()
    state = device.state()
    state.reserve(loaded.counter + 1, loaded.tombstone_seq + 1, None)
    state.close()

    _, requests = await counted(device)
    assert requests["get_if_changed"] == 1, requests


async def test_an_untrustworthy_own_head_is_a_problem_and_is_published_anew(
    device: Device,
) -> None:
    await synced(device, "a.txt")
    await device.remote.put(KEYS.head(ME), b'{"format": 1, "device_id": "laptop"}')

    _, got, _ = await device.recover()

    (problem,) = got.problems
    assert problem.kind == "integrity" and problem.path == KEYS.head(ME)
    assert got.loaded.mend_head  # so the pass publishes a good head
    # a pass with nothing to do does not read it (SPEC 4 step 1: an idle pass makes one
    # request); one that reconciles anything reads it first, here one with nothing changed
    idle, requests = await counted(device)
    assert idle.snapshot is None and "get_if_changed" not in requests, requests
    mended = await synced(device, full=True)
    assert mended.snapshot is not None and mended.problems == 1
    _, after, _ = await device.recover()
    assert after.problems == [] and after.loaded.last_snapshot == mended.snapshot
