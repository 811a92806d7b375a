"""Other devices' changes committed in batches when one pass would hold too many of them
at once: a new device joining a root of a million files, or one that was away while
another added them (IO: tree nodes, through the steps of `dropbeard.sync.batches`).

Reading the other devices stops a diff once it holds more than a batch of paths, and
marks that device `oversized` (`dropbeard.sync.remote`). Before the pass scans, the diff
is streamed again from the same tree and handed out a batch of paths at a time; each
batch is what a pass over exactly those paths would do: the folder scanned at those
paths, reconciled with their bases and every other device's entries of them, applied
(downloads, conflict copies), this device's tree updated and published, and state.sqlite
committed. Deletes travel only as tombstones, so a batch deletes nothing: the device's
new tombstones stay for the pass itself, which reconciles them and the mass-delete guard
with every other change, as usual.

The device's processed mark (its peer row) is not touched by a batch: only the pass's
own commit advances it, once every batch committed. A crash between two batches leaves a
consistent state whose mark still names the old tree; the next pass diffs from there
again and finds the paths already committed agreed (nothing to do for them). A path
that failed stays open (`pending`), so the next pass reconciles it, looking its entry up
in the tree, though its diff no longer lists it.
"""

from __future__ import annotations

from contextlib import aclosing

import msgspec

from dropbeard.core.model import Entry
from dropbeard.core.treediff import to_entry
from dropbeard.sync.batches import Batches
from dropbeard.sync.folderrows import with_slack
from dropbeard.sync.inputs import RemoteSide
from dropbeard.sync.remote import UNREADABLE, DeviceView
from dropbeard.sync.treeread import diff


async def catch_up(batches: Batches, remote: RemoteSide) -> None:
    """Commit the changes of every `oversized` device of `remote` in batches of
    `batch_paths` paths (the last up to a quarter larger: `with_slack`). A device whose
    tree fails to read part way is skipped from then on (a problem names it); what its
    earlier batches committed was verified, and stays."""
    read = remote.read
    assert read is not None
    meter = batches.run.opts.meter
    if meter is not None:  # the totals are not known before the diffs are read
        meter.begin("downloading", None, None)
    streamed: set[tuple[str | None, str | None]] = set()
    for dev in remote.oversized:
        view = read.devices[dev]
        if (view.since, view.tree) not in streamed:
            try:
                await _device(batches, remote, view)
            except UNREADABLE as exc:
                read.skip(dev, str(exc))
                continue
            streamed.add((view.since, view.tree))
        # else its diff is one already streamed, path for path: every batch of it was
        # reconciled with this device's entries (the same tree's), nothing is left
        view.oversized = False  # every change committed (or left open): none left


async def _device(batches: Batches, remote: RemoteSide, view: DeviceView) -> None:
    """Stream `view`'s diff (from the tree it was diffed from) a batch at a time."""
    size = max(1, batches.run.opts.batch_paths)
    most = with_slack(size)  # what the last batch may take
    batch: dict[str, Entry | None] = {}
    trees = batches.run.trees
    async with aclosing(diff(trees, view.since, view.tree)) as differences:
        async for path, _, new in differences:
            batch[path] = None if new is None else to_entry(path, new)
            if len(batch) > most:  # more than a last batch: a batch of them goes
                held = list(batch.items())
                await _flush(batches, remote, view, dict(held[:size]))
                batch = dict(held[size:])
    if batch:
        await _flush(batches, remote, view, batch)


async def _flush(
    batches: Batches, remote: RemoteSide, view: DeviceView, batch: dict[str, Entry | None]
) -> None:
    """One batch: `view`'s device with `batch` as its changes, the other devices as read
    (their entries of these paths are looked up in their trees: an oversized one holds no
    change), no tombstone. A device whose tree is `view`'s holds `batch`'s entries at
    these paths: it takes them, rather than a lookup per path in the same tree."""
    assert remote.read is not None
    devices = {
        dev: msgspec.structs.replace(other, tombstones=[], held_before={})
        if other.tree != view.tree
        else msgspec.structs.replace(
            other, changes=batch, complete=False, oversized=False, tombstones=[], held_before={}
        )
        for dev, other in remote.read.devices.items()
    }
    read = msgspec.structs.replace(remote.read, devices=devices)
    side = RemoteSide(read, set(batch))
    await batches.flush_remote(side, frozenset(batch))
