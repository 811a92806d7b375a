"""`verify`: is everything the current heads (or every snapshot) reference in the bucket,
and does it hold the right bytes? (IO: store listings and reads.)

The structural check lists `trees/` and `blobs/` once, then marks from the roots against
that listing (`sync.reach`): no HEAD per object, nodes read through the caller's
TreeStore (its cache included, so an unchanged tree costs no node reads). A re-hash
(`share` 1.0 for `--full`, less for `--sample`) reads each chosen blob and checks its
SHA-256 (for `--full` the caller passes a TreeStore without a disk cache, so nodes are
read from the bucket and checked against their keys too).
"""

from __future__ import annotations

import hashlib
import random

import anyio
import msgspec

from dropbeard.core.errors import NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store
from dropbeard.sync.devicelog import SnapshotReader, list_devices
from dropbeard.sync.heads import read_heads
from dropbeard.sync.reach import Finding, Marker, Where, list_contents
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.workers import for_each

#: Blobs re-hashed at once (each held whole in memory: at most 16 MiB).
REHASH_CONCURRENCY = 4


class VerifyReport(msgspec.Struct):
    """What one verify checked and found. `unreadable` are heads and snapshots that could
    not be decoded (each one line naming its key)."""

    roots: int = 0
    heads: int = 0
    snapshots: int = 0
    nodes: int = 0
    blobs: int = 0
    rehashed: int = 0
    rehashed_bytes: int = 0
    strays: int = 0
    findings: list[Finding] = msgspec.field(default_factory=list)
    unreadable: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.unreadable


async def verify_bucket(
    store: Store,
    keys: RootKeys,
    trees: TreeStore,
    *,
    all_snapshots: bool = False,
    devices: list[str] | None = None,
    share: float = 0.0,
    snapshots: SnapshotReader | None = None,
    rng: random.Random | None = None,
) -> VerifyReport:
    """Check what the current heads (of `devices`, default all) reach, and with
    `all_snapshots` what every snapshot in the bucket reaches; re-hash a `share` of the
    blobs reached (0: none, 1: all)."""
    report = VerifyReport()
    heads = await read_heads(store, keys, devices)
    report.unreadable += heads.failed.values()
    roots = [(f"{d} head", tree) for d, tree in heads.roots().items()]
    report.heads = len(roots)
    if all_snapshots:
        reader = snapshots or SnapshotReader(store, keys)
        folders = await list_devices(store, keys)
        wanted = {
            d: list(f.snapshots) for d, f in folders.items() if devices is None or d in devices
        }
        for device, snaps in (await reader.read_all(wanted)).items():
            roots += [(f"{device} {s.snapshot}", s.tree) for s in snaps.values()]
        report.unreadable += reader.failed.values()
        report.snapshots = len(roots) - report.heads
    contents = await list_contents(store, keys)
    report.strays = contents.strays
    marker = Marker(trees, listing=contents.listing, blob_places=share > 0)
    await marker.mark(roots)
    report.roots, report.nodes, report.blobs = len(roots), len(marker.nodes), len(marker.blobs)
    report.findings = list(marker.findings.values())
    if share > 0:
        await _rehash(store, keys, marker, share, rng or random.Random(), report)
    report.findings.sort(key=lambda f: f.key)
    return report


async def _rehash(
    store: Store,
    keys: RootKeys,
    marker: Marker,
    share: float,
    rng: random.Random,
    report: VerifyReport,
) -> None:
    places = marker.places
    assert places is not None
    present = sorted(d for d in marker.blobs if keys.blob(d) not in marker.findings)
    chosen = present if share >= 1 else [d for d in present if rng.random() < share]

    async def one(digest: str) -> None:
        key = keys.blob(digest)
        try:
            data = await store.get(key)
        except NotFound:
            _found(report, key, "missing", places, digest)
            return
        got = await anyio.to_thread.run_sync(_sha256, data)
        report.rehashed += 1
        report.rehashed_bytes += len(data)
        if got != digest:
            _found(report, key, f"corrupt: its bytes hash to {got}", places, digest)

    await for_each(chosen, one, REHASH_CONCURRENCY)


def _found(
    report: VerifyReport, key: str, problem: str, places: dict[str, Where], digest: str
) -> None:
    where = [places[digest]] if digest in places else []
    report.findings.append(Finding("blob", key, problem, where))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
