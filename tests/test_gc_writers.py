"""gc against writers (SPEC 8.2), end to end through the command line on a local remote:
a writer that finds old bytes already in the bucket, unreached by anything, refreshes
them, so a gc running between that upload and the head write spares them."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

import dropbeard.cli.sync
from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.chunking import Chunker
from dropbeard.sync.gc import GcReport, collect_garbage
from dropbeard.sync.trees import TreeStore
from tests.chunkfiles import MiB, noise, sha
from tests.converge import Bucket, Cli, Device, devices, local_bucket

T = TypeVar("T")
DAY = 86400.0
WRITES = frozenset({"put", "put_if_absent", "put_if_match"})


class BeforeCommit(ForwardingStore):
    """Runs `hook` (once) just before the next snapshot write of a pass through this store:
    after its uploads, before anything retained reaches them (a snapshot is retained as
    soon as it is written, its head or not)."""

    hook: Callable[[], Awaitable[None]] | None = None

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        hook = type(self).hook
        if hook is not None and op in WRITES and "/snapshots/" in key:
            type(self).hook = None
            await hook()
        return await call()


@pytest.fixture
def hooked_sync(monkeypatch: pytest.MonkeyPatch) -> type[BeforeCommit]:
    """`sync` opens its store through BeforeCommit (a fresh subclass per test)."""
    real = dropbeard.cli.sync.open_store
    hooks = type("Hooks", (BeforeCommit,), {})

    def opener(*args: object, **kwargs: object) -> Store:
        return hooks(real(*args, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(dropbeard.cli.sync, "open_store", opener)
    return hooks


def remote_dir(bucket: Bucket) -> Path:
    return Path(bucket.url)


def age(bucket: Bucket, key: str, seconds: float) -> None:
    """Make `key`'s LastModified `seconds` older (the local store's mtime)."""
    path = remote_dir(bucket) / key
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


async def gc_now(bucket: Bucket) -> GcReport:
    store = LocalStore(remote_dir(bucket))
    try:
        return await collect_garbage(store, bucket.keys, TreeStore(store, bucket.keys))
    finally:
        await store.aclose()


def blobs_of_file(path: Path) -> list[str]:
    """The blobs a file is stored in: its chunks, or its one blob."""
    digest = Chunker().digest_file(path)
    return [c.sha256 for c in digest.chunks] if digest.chunks else [digest.sha256]


def short_grace(device: Device) -> None:
    got = device.cli("retention", "--root", str(device.root), "--grace", "3s")
    assert got.code == 0, got.err


@pytest.mark.parametrize(
    "size", [5, 9 * MiB, 17 * MiB], ids=["small-blob", "one-large-blob", "chunks"]
)
def test_old_unreached_bytes_an_upload_finds_present_are_refreshed_and_survive_gc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hooked_sync: type[BeforeCommit], size: int
) -> None:
    """The bytes of a new file are already in the bucket, a day old and reached by
    nothing (a pass that died before its head, or a snapshot pruned since): the upload
    finds them present, and a gc between that and the snapshot write (past the grace
    period for the old bytes) would delete them. They are written again instead, so gc spares
    them and the head is complete."""
    bucket = local_bucket(tmp_path, Cli(capsys))
    (a,) = devices(bucket, tmp_path, "a")
    short_grace(a)
    data = noise(f"orphan {size}", size)
    a.write("f.bin", data)
    blobs = blobs_of_file(a.path("f.bin"))
    whole = data if len(blobs) == 1 else None
    for i, blob in enumerate(blobs):
        key = bucket.keys.blob(blob)
        if whole is None:
            digest = Chunker().digest_file(a.path("f.bin"))
            assert digest.chunks is not None
            offset = sum(c.size for c in digest.chunks[:i])
            bucket.put(key, data[offset : offset + digest.chunks[i].size])
        else:
            bucket.put(key, whole)
        age(bucket, key, DAY)
    reports: list[GcReport] = []

    async def gc() -> None:
        reports.append(await gc_now(bucket))

    hooked_sync.hook = gc
    a.sync()
    assert len(reports) == 1 and reports[0].blobs == []  # it ran, and deleted none
    keys = set(bucket.objects())
    assert {bucket.keys.blob(b) for b in blobs} <= keys
    got = a.cli("verify", "--root", str(a.root), "--full")
    assert got.code == 0, got.out + got.err
    assert sha(a.read("f.bin")) == sha(data)


def test_bytes_written_within_half_the_grace_period_are_not_sent_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blob found present and written recently (an upload cut short, then resumed;
    another device adding the same bytes) is not refreshed: no bytes sent for it."""
    bucket = local_bucket(tmp_path, Cli(capsys))
    (a,) = devices(bucket, tmp_path, "a")
    data = noise("recent", 1000)
    bucket.put_blob(data)
    a.write("f.bin", data)
    assert a.sync().json["uploaded"] == 0


def test_bytes_written_longer_ago_than_half_the_grace_period_are_sent_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = local_bucket(tmp_path, Cli(capsys))
    (a,) = devices(bucket, tmp_path, "a")
    short_grace(a)
    data = noise("old", 1000)
    key = bucket.keys.blob(bucket.put_blob(data))
    age(bucket, key, 2.0)  # over 3s / 2
    before = (remote_dir(bucket) / key).stat().st_mtime
    a.write("f.bin", data)
    assert a.sync().json["uploaded"] == 1
    assert (remote_dir(bucket) / key).stat().st_mtime > before + 1.5
