"""What a pass changes in this device's published tree (pure): the paths whose listed
entry differs from what their bases published before the pass, and what that does to the
snapshot's file count and bytes.

The tree a device published last lists exactly what its agreed bases publish
(`core.plan.publishable`): every path a pass leaves open it lists as its base says. So
the changes of a plan are its listing's entries that differ from the bases before it —
for a full reconcile (a `complete` listing) also every path its bases published that the
listing leaves out — and the paths that stopped being tracked (an ignore rule covers them
now). Applying them to the last tree (`dropbeard.sync.treewrite.update`) gives the tree of
the plan's listing, rewriting only the nodes on their way. A full reconcile is compared
with the last tree itself when the caller read it (`previous`: after bases were taken back
from the bucket, which may not publish what that tree lists, or when asked to reconcile
everything).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from dropbeard.core.model import Entry
from dropbeard.core.plan import Base, Plan, publishable
from dropbeard.core.tree import TreeEntry
from dropbeard.core.treediff import to_tree_entry

Change = tuple[Entry | None, Entry | None]
"""A path's entry in the last published tree and in the new one (None: not listed)."""


class TreeChanges(msgspec.Struct):
    """The changed paths of a tree (`changes`: path -> (old, new)), and what they add to
    its file count and bytes. `orphans` are paths the listing holds whose folder it does
    not hold as a folder: a tree cannot list them (they are left out)."""

    changes: dict[str, Change] = msgspec.field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    orphans: list[str] = msgspec.field(default_factory=list)

    def tree_entries(self) -> dict[str, TreeEntry | None]:
        """path -> its new tree entry, or None to remove it: what `treewrite.update`
        applies (a folder's `tree` is filled in there)."""
        return {
            p: None if new is None else to_tree_entry(new) for p, (_, new) in self.changes.items()
        }


def tree_changes(
    plan: Plan,
    base: Mapping[str, Base],
    untracked: Mapping[str, Base] | None = None,
    previous: Mapping[str, Entry] | None = None,
) -> TreeChanges:
    """The changes `plan`'s listing makes to the tree its bases published (`base`: the
    bases of its paths and their folders before the pass, every base when the listing is
    `complete`; `untracked`: the bases of the paths no longer tracked), or to `previous`,
    every entry of that tree, when given with a complete listing."""
    if not plan.complete:
        previous = None
    if previous is None:
        before = {p: e for p, b in base.items() if (e := publishable(b)) is not None}
        for path, agreed in (untracked or {}).items():
            if (listed := publishable(agreed)) is not None:
                before.setdefault(path, listed)
    else:
        before = dict(previous)
    found = TreeChanges()
    for path, new in plan.listing.items():
        _note(found, path, before.get(path), new)
    if plan.complete:
        for path, old in before.items():
            if path not in plan.listing:
                _note(found, path, old, None)
    else:
        for path in untracked or {}:
            if path not in plan.listing:
                _note(found, path, before.get(path), None)
    _drop_orphans(found, before)
    return found


def _note(found: TreeChanges, path: str, old: Entry | None, new: Entry | None) -> None:
    if old == new:
        return
    found.changes[path] = (old, new)
    for entry, sign in ((old, -1), (new, 1)):
        if entry is not None and entry.type == "file":
            found.files += sign
            found.bytes += sign * (entry.size or 0)


def _drop_orphans(found: TreeChanges, before: Mapping[str, Entry]) -> None:
    """Take out of the new tree each entry whose folder the new tree does not hold as a
    folder: a path of a tree is under folders of that tree."""

    def folder_listed(folder: str) -> bool:
        change = found.changes.get(folder)
        new = before.get(folder) if change is None else change[1]
        return new is not None and new.type == "dir"

    orphans = [
        path
        for path, (_, new) in found.changes.items()
        if new is not None and not all(folder_listed(f) for f in _folders_of(path))
    ]
    for path in orphans:
        old, new = found.changes.pop(path)
        found.orphans.append(path)
        if old is not None:
            found.changes[path] = (old, None)
        if new is not None and new.type == "file":
            found.files -= 1
            found.bytes -= new.size or 0
    found.orphans.sort()


def _folders_of(path: str) -> Iterable[str]:
    """The folders above `path`, nearest first."""
    folder = path.rpartition("/")[0]
    while folder:
        yield folder
        folder = folder.rpartition("/")[0]
