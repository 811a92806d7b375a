"""The repair of SPEC 8.2: a structural verify of this device's own head, re-uploading
from its own disk any blob or chunk it references that is missing or corrupt, and any
tree node from its node cache (IO: store, local files in worker threads).

A gc can delete an object in the moment between a writer's refresh and its head write;
the head then names an object no longer there, and only its owner holds the bytes. The
bytes are re-read from the path the head names and uploaded only if they still hash to
the missing key (a file edited since is left for the next pass to publish); a node
comes back from the cache the sync pass keeps of the nodes it wrote, checked against
its key. What cannot be repaired is reported, one line each.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import msgspec

from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store
from dropbeard.sync.heads import read_head
from dropbeard.sync.reach import Finding
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.treeread import lookup
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.verify import VerifyReport, verify_bucket

#: Verify again after nodes came back (what they list could not be checked before),
#: until no node comes back: at most this many rounds (one per level of folders lost).
MAX_ROUNDS = 64


class RepairReport(msgspec.Struct):
    """What the verify of this device's head found, what came back, what could not."""

    verify: VerifyReport
    reuploaded: list[str] = msgspec.field(default_factory=list)  # keys
    unrepaired: list[str] = msgspec.field(default_factory=list)  # one line each

    @property
    def ok(self) -> bool:
        return not self.unrepaired and not self.verify.unreadable


async def repair_own_head(
    store: Store,
    keys: RootKeys,
    device: str,
    root: Path,
    trees: TreeStore,
    written: NodeCache | None,
) -> RepairReport:
    """Verify `device`'s head and put back what is missing from `root` and `written`;
    again after a node came back (what it lists could not be checked before)."""
    reuploaded: list[str] = []
    for _ in range(MAX_ROUNDS):
        verify = await verify_bucket(store, keys, trees, devices=[device])
        report = RepairReport(verify, reuploaded)
        if not verify.findings:
            break
        head = await read_head(store, keys, device)
        head_root = head.tree if head is not None else None
        nodes_back = False
        for finding in verify.findings:
            if finding.kind == "tree":
                done = await _node_back(store, keys, finding, written)
                nodes_back = nodes_back or done
            else:
                done = head_root is not None and await _blob_back(
                    store, keys, finding, trees, head_root, root
                )
            if done:
                report.reuploaded.append(finding.key)
            else:
                report.unrepaired.append(finding.line())
        if not nodes_back:
            break
    return report


async def _node_back(
    store: Store, keys: RootKeys, finding: Finding, written: NodeCache | None
) -> bool:
    digest = keys.tree_sha256_of(finding.key)
    data = None if written is None else await anyio.to_thread.run_sync(written.read, digest)
    if data is None:
        return False
    await store.put(finding.key, data, sha256=digest)
    return True


async def _blob_back(
    store: Store, keys: RootKeys, finding: Finding, trees: TreeStore, head_root: str, root: Path
) -> bool:
    digest = keys.sha256_of(finding.key)
    for where in finding.where:
        entry = await lookup(trees, head_root, where.path)
        if entry is None or entry.sha256 is None or entry.size is None:
            continue
        offset, size = 0, entry.size
        for chunk in entry.chunks or ():
            if chunk.sha256 == digest:
                size = chunk.size
                break
            offset += chunk.size
        data = await anyio.to_thread.run_sync(_read, root / where.path, offset, size)
        if data is not None and hashlib.sha256(data).hexdigest() == digest:
            await store.put(finding.key, data, sha256=digest)
            return True
    return False


def _read(path: Path, offset: int, size: int) -> bytes | None:
    """`size` bytes at `offset` of the regular file at `path` (never following a link),
    or None when they cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.pread(fd, size, offset)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == size else None
