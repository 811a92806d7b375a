"""Drift: differences between what this device believes it published and what the bucket
holds — its head, its snapshot, its tree, the blobs that tree references (IO: store
reads, tree nodes through the node cache)."""

from __future__ import annotations

from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import decode_head
from dropbeard.store.base import Store
from dropbeard.sync.treeread import walk
from dropbeard.sync.trees import TreeStore

#: at most this many missing blobs are named (the count is always exact)
SHOWN = 20


async def find_drift(
    store: Store, trees: TreeStore, device_id: str, last_snapshot: str | None
) -> list[str]:
    """One line per problem found; empty when the bucket matches our last publish."""
    if last_snapshot is None:
        return []
    keys: RootKeys = trees.keys
    try:
        head = decode_head(await store.get(keys.head(device_id)), keys.head(device_id))
    except NotFound:
        return [f"our head {keys.head(device_id)} is missing (we published {last_snapshot})"]
    found: list[str] = []
    if head.snapshot != last_snapshot:
        found.append(
            f"our head points at snapshot {head.snapshot}, we last published {last_snapshot}"
        )
    if head.snapshot is None or head.tree is None:
        return found
    key = keys.snapshot(device_id, head.snapshot)
    try:
        await store.head(key)
    except NotFound:
        found.append(f"snapshot {key} named by our head is missing")
    wanted: set[str] = set()
    try:
        async for _, entry in walk(trees, head.tree):
            if entry.chunks:
                wanted.update(c.sha256 for c in entry.chunks)
            elif entry.sha256:
                wanted.add(entry.sha256)
    except (NotFound, IntegrityError, FormatError) as exc:
        return [*found, f"our tree cannot be read: {exc}"]
    present: set[str] = set()
    async for page in store.list(keys.blobs_prefix):
        present.update(o.key.rpartition("/")[2] for o in page.objects)
    missing = sorted(wanted - present)
    if missing:
        named = ", ".join(missing[:SHOWN]) + (" …" if len(missing) > SHOWN else "")
        found.append(f"{len(missing)} blobs our tree references are missing: {named}")
    return found
