"""Drift: differences between what this device believes it published and what the bucket
holds — its head, its manifest, the blobs that manifest references (IO: store reads)."""

from __future__ import annotations

import hashlib

from dropbeard.core.errors import NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import decode_head, decode_manifest
from dropbeard.store.base import Store

#: at most this many missing blobs are named (the count is always exact)
SHOWN = 20


async def find_drift(
    store: Store, keys: RootKeys, device_id: str, last_manifest: str | None
) -> list[str]:
    """One line per problem found; empty when the bucket matches our last publish."""
    if last_manifest is None:
        return []
    try:
        head = decode_head(await store.get(keys.head(device_id)), keys.head(device_id))
    except NotFound:
        return [f"our head {keys.head(device_id)} is missing (we published {last_manifest})"]
    found: list[str] = []
    if head.manifest != last_manifest:
        found.append(
            f"our head points at manifest {head.manifest}, we last published {last_manifest}"
        )
    key = keys.manifest(device_id, head.manifest)
    try:
        data = await store.get(key)
    except NotFound:
        return [*found, f"manifest {key} named by our head is missing"]
    if hashlib.sha256(data).hexdigest() != head.manifest_sha256:
        return [*found, f"manifest {key} does not match the SHA-256 in our head"]
    wanted = {e.sha256 for e in decode_manifest(data, key).entries if e.sha256}
    present: set[str] = set()
    async for page in store.list(keys.blobs_prefix):
        present.update(o.key.rpartition("/")[2] for o in page.objects)
    missing = sorted(wanted - present)
    if missing:
        named = ", ".join(missing[:SHOWN]) + (" …" if len(missing) > SHOWN else "")
        found.append(f"{len(missing)} blobs our manifest references are missing: {named}")
    return found
