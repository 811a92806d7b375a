"""What a device takes back from its own head when the head is ahead of its local state
(SPEC 4 step 1) (pure).

That happens after a crash between the head write and the local commit, or when
`.dropbear/` was restored from an older backup: the bucket then holds a tree and
tombstones this device published but never recorded as agreed. Its head is the authority:
the paths of its tree are agreed at their published entries, the paths deleted by the
tombstones it covers (and the tree no longer lists) are agreed deleted, and its
counter continues after every counter those objects carry, so nothing published is
forgotten or reused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import Base


def recovered_bases(
    base: Mapping[str, Base], published: Sequence[Entry], deleted: Iterable[Delete]
) -> dict[str, Base]:
    """The bases that change once the head is taken back: every entry of the head's
    tree (`published`) agreed as published, and every path deleted by a batch the
    head covers and state.sqlite does not (`deleted`: this device's own batches after the
    last committed one, and the other devices' batches its `seen` marks processed; later
    deletes of a path last) that the tree does not list, agreed deleted. Paths
    neither mentions keep their base (a conflict left out of the tree, a path an
    ignore rule now covers): the pass reconciles them again."""
    changed: dict[str, Base] = {}
    listed = {e.path for e in published}
    for gone in deleted:
        if gone.path not in listed:
            changed[gone.path] = Base(deleted=gone)
    for entry in published:
        changed[entry.path] = Base(entry=entry)
    return {p: b for p, b in changed.items() if base.get(p) != b}


def highest_own_counter(
    device_id: str, published: Iterable[Entry], deleted: Iterable[Delete]
) -> int:
    """The highest counter of `device_id` in the versions of `published` and `deleted`."""
    versions = [e.version for e in published] + [d.version for d in deleted]
    return max((v.get(device_id, 0) for v in versions), default=0)
