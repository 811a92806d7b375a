"""What one pass scans and reconciles (SPEC 4, principle 4) (IO: state.sqlite through
`Bases`, in a worker thread).

A pass reconciles the union of what changed — local changes (from a full stat-only rescan,
or from rescanning the paths the watcher reported), the paths other devices changed since
this one last processed them, their new tombstones — and the paths the last pass left open
(state.sqlite's `pending`). A pass over some paths scans exactly those. Every base is read
only by a full reconcile: when no pass recorded what it left open (a new or older index,
state taken back from the bucket), when the ignore rules changed (paths they now cover or
release were skipped both ways until now), or on request (`--full-reconcile`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection, Iterable

import msgspec

from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.model import Entry
from dropbeard.core.passrules import leftovers, newly_ignored, under_any
from dropbeard.core.plan import Base
from dropbeard.core.scope import assumed_local, local_changes, with_folders
from dropbeard.sync.bases import Bases


class Scope(msgspec.Struct, frozen=True):
    """What a pass covers: `full` reconciles every path (else the changed ones); `targets`
    are the paths its scan covers, with what is below them (None: the whole root)."""

    full: bool
    targets: frozenset[str] | None

    def scanned(self, path: str) -> bool:
        """True if the scan covered `path`."""
        return self.targets is None or under_any(path, self.targets)


def choose_scope(
    *,
    forced: bool,
    pending: set[str] | None,
    ignore_changed: bool,
    only: Collection[str] | None,
    elsewhere: Collection[str],
) -> Scope:
    """The scope of a pass asked to rescan `only` (None: the whole root), given the paths
    other devices changed (`elsewhere`, their tombstones' included) and those the last
    pass left open (`pending`, None when unknown). `forced`: a full reconcile was asked
    for; `ignore_changed`: the ignore rules differ from the last pass's."""
    if forced or pending is None or ignore_changed:
        return Scope(True, None)
    asked = [_target(p) for p in only] if only is not None else None
    if asked is None or "" in asked:  # the root itself: rescan it whole
        return Scope(False, None)
    targets = {t for t in (*asked, *map(_target, (*elsewhere, *pending))) if t}
    return Scope(False, frozenset(targets))


def _target(path: str) -> str | None:
    """`path` as a scan target: NFC, no empty or `.` segment ("" for the root itself);
    None if it cannot be one (absolute, or climbing out with `..`)."""
    parts = [p for p in unicodedata.normalize("NFC", path).split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        return None
    return "/".join(parts)


class Changes(msgspec.Struct, frozen=True):
    """The paths a pass reconciles (None: every path) and the bases it starts from: those
    of the paths and of their folders (every base for a full reconcile). `assumed` is the
    content of folders a pass over some paths did not scan (`core.scope.assumed_local`);
    `untracked` the tracked paths an ignore rule now covers (a full reconcile finds them:
    they stop being tracked, with no local delete and no tombstone), left out of `base`;
    `leftovers` the folders deleted everywhere that stay here only for what is not
    synced, left out of what the scan found."""

    paths: frozenset[str] | None
    base: dict[str, Base]
    assumed: dict[str, Entry] = msgspec.field(default_factory=dict)
    untracked: list[str] = msgspec.field(default_factory=list)
    leftovers: set[str] = msgspec.field(default_factory=set)

    def local(self, scanned: dict[str, Entry]) -> dict[str, Entry]:
        """Reconcile's `local`: what the scan found, but the leftovers (folders kept only
        for what is not synced, `core.passrules.leftovers`), and the assumed folders."""
        if not (self.leftovers or self.assumed):
            return scanned
        found = {p: e for p, e in scanned.items() if p not in self.leftovers}
        return {**self.assumed, **found}


def find_changes(
    bases: Bases,
    scope: Scope,
    local: dict[str, Entry],
    elsewhere: Collection[str],
    pending: Collection[str],
    ignore: IgnoreRules,
    holds_something: Callable[[str], bool],
    vanished: Collection[str] | None = None,
) -> Changes:
    """What the pass reconciles: the paths changed here (`local` is what the scan found
    within `scope`), `elsewhere` and `pending`, with their bases. `holds_something(path)`
    says whether a folder holds anything at all (`core.passrules.leftovers`). `vanished`
    (a scan of the whole root that compared each folder with state.sqlite): the tracked
    paths it no longer found; `local` is then only what it found changed, and the bases
    of those paths alone are read. Runs in a worker thread."""
    if scope.full:
        every = bases.every()
        kept = leftovers(local, every, holds_something)
        untracked = newly_ignored(every, local.keys() - kept, ignore)
        for path in untracked:
            del every[path]
        return Changes(None, every, untracked=untracked, leftovers=kept)
    scanned: Iterable[tuple[str, Base]]
    if vanished is not None:
        scanned = sorted(bases.of([*local, *vanished]).items())
    else:
        scanned = _bases_scanned(bases, scope)
    changed = local_changes(scanned, local)
    deleted = {p: b for p, b in changed.items() if b is not None and b.deleted is not None}
    kept = leftovers(local, deleted, holds_something) if deleted else set()
    for path in kept:
        del changed[path]
    paths = changed.keys() | set(elsewhere) | set(pending)
    folders = with_folders(paths)
    base = {p: b for p, b in changed.items() if b is not None}
    base.update(bases.of(folders - base.keys() - changed.keys()))
    assumed = assumed_local(folders - paths, base, scope.scanned)
    return Changes(frozenset(paths), base, assumed, leftovers=kept)


def _bases_scanned(bases: Bases, scope: Scope) -> Iterable[tuple[str, Base]]:
    """The bases of the paths the scan covered, sorted by path (every base, streamed,
    for a full rescan)."""
    if scope.targets is None:
        return bases.each()
    found = dict(bases.of(scope.targets))
    for target in scope.targets:
        found.update(bases.below(target))
    return sorted(found.items())
