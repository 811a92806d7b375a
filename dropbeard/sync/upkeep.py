"""The daemon's daily upkeep of one root (SPEC 7, 8.2): gc, then a structural verify of
this device's own head that uploads again from its disk anything missing (IO: store,
the root's caches and files)."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec

from dropbeard.core.config import RootConfig
from dropbeard.core.keys import RootKeys
from dropbeard.core.retention import format_period
from dropbeard.store.base import Store
from dropbeard.sync.devicelog import SnapshotReader
from dropbeard.sync.gc import GcReport, collect_garbage
from dropbeard.sync.repair import RepairReport, repair_own_head
from dropbeard.sync.root import RootPaths
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trees import TreeStore


class Upkeep(msgspec.Struct):
    gc: GcReport
    repair: RepairReport

    def gc_event(self) -> dict[str, Any]:
        """The `gc` log event's fields: what went, what it freed, what stayed."""
        r = self.gc
        return {
            "snapshots": len(r.snapshots),
            "tombstones": len(r.tombstones),
            "retired_objects": len(r.retired),
            "trees": len(r.trees),
            "blobs": len(r.blobs),
            "deleted": len(r.deleted),
            "freed_bytes": r.freed_bytes,
            "kept_snapshots": r.kept_snapshots,
            "spared_young": r.spared_young,
            "spared_late": r.spared_late,
            "grace": format_period(r.policy.grace),
        }

    def verify_event(self) -> dict[str, Any]:
        """The `verify` log event's fields: what was checked, put back, left broken."""
        r = self.repair
        return {
            "ok": r.ok,
            "trees": r.verify.nodes,
            "blobs": r.verify.blobs,
            "reuploaded": len(r.reuploaded),
            "unrepaired": r.unrepaired[:20],
            "unreadable": r.verify.unreadable[:20],
        }


async def upkeep(paths: RootPaths, cfg: RootConfig, store: Store) -> Upkeep:
    """gc over the root's bucket, then the repair of this device's head."""
    keys = RootKeys(cfg.root_id)
    trees = TreeStore(store, keys, NodeCache(paths.history_trees))
    reader = SnapshotReader(store, keys, paths.log_cache)
    gc = await collect_garbage(store, keys, trees, snapshots=reader)
    written = paths.trees
    cache = NodeCache(written) if await anyio.Path(written).is_dir() else None
    repair = await repair_own_head(store, keys, cfg.device_id, paths.root, trees, cache)
    return Upkeep(gc, repair)
