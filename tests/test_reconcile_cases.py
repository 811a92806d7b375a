"""Reconcile, case by case, as SPEC sections 3, 4.1, 4.2 and 4.4 state it.

This device is `laptop` (counter 10, so its next fresh version is `laptop: 11`); the other
devices are `desktop` and `server`. Contents are short strings; a file's sha256 is the
hash of its string, so the table reads as "a holds v2" rather than digests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import pytest

from dropbeard.core.chunking import Chunk
from dropbeard.core.folders import bases_below_in
from dropbeard.core.fullcheck import plan_differences
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import PUBLISHES, publishable
from dropbeard.core.reconcile import Base, ConflictInfo, Mode, Plan, Remote, reconcile
from dropbeard.core.scope import local_changes, with_folders

ME = "laptop"
NOW = datetime(2026, 5, 22, 18, 5, tzinfo=UTC)
DESKTOP_AT = "20260522T175900Z"
SERVER_AT = "20260522T180100Z"

_LABELS: dict[str, str] = {}


def F(path: str, data: str, v: dict[str, int] | None = None, mode: int = 0o644) -> Entry:
    """A file entry holding `data`."""
    sha = hashlib.sha256(data.encode()).hexdigest()
    _LABELS[sha] = data
    size = len(data)
    return Entry(path=path, type="file", mode=mode, version=v or {}, size=size, sha256=sha)


def D(path: str, v: dict[str, int] | None = None, mode: int = 0o755) -> Entry:
    return Entry(path=path, type="dir", mode=mode, version=v or {})


def L(path: str, target: str, v: dict[str, int] | None = None) -> Entry:
    return Entry(path=path, type="symlink", mode=0o777, version=v or {}, target=target)


def gone(path: str, v: dict[str, int], kind: str = "file", of: str | None = None) -> Delete:
    """A delete of `path`; `of`: the content it names (a file's bytes)."""
    sha = hashlib.sha256(of.encode()).hexdigest() if of is not None else None
    return Delete(path=path, type=kind, version=v, sha256=sha)  # type: ignore[arg-type]


def label(e: Entry) -> str:
    if e.type == "dir":
        return "dir" if e.mode == 0o755 else f"dir@{e.mode:o}"
    if e.type == "symlink":
        return f"->{e.target}"
    assert e.sha256 is not None
    text = _LABELS[e.sha256]
    return text if e.mode == 0o644 else f"{text}@{e.mode:o}"


def held(*entries: Entry) -> dict[str, Base]:
    """A base agreeing on `entries` (with their versions)."""
    return {e.path: Base(entry=e) for e in entries}


def remote(device: str, *entries: Entry, at: str | None = None) -> Remote:
    snapshot = at or (DESKTOP_AT if device == "desktop" else SERVER_AT)
    return Remote(device_id=device, snapshot=snapshot, entries={e.path: e for e in entries})


def run(
    *,
    base: dict[str, Base] | None = None,
    local: list[Entry] | None = None,
    remotes: list[Remote] | None = None,
    tombstones: list[tuple[str, Delete]] | None = None,
    mode: Mode = "bidirectional",
    unknown: frozenset[str] = frozenset(),
    counter: int = 10,
) -> Plan:
    """The full reconcile of the case, checked against the incremental one (`changed`)."""
    base, remotes, tombstones = base or {}, remotes or [], tombstones or []
    folder = {e.path: e for e in local or []}

    def plan(paths: set[str] | None, counter: int) -> Plan:
        return reconcile(
            device_id=ME,
            mode=mode,
            base=base if paths is None else {p: base[p] for p in with_folders(paths) if p in base},
            local=folder,
            unknown=lambda p: p in unknown,
            remotes=remotes,
            tombstones=tombstones,
            counter=counter,
            now=NOW,
            paths=paths,
            base_below=bases_below_in(base),
        )

    full = plan(None, counter)
    previous = {p: e for p, b in base.items() if (e := publishable(b)) is not None}
    if mode not in PUBLISHES:
        previous = {}
    # The engine's counter is never below a counter of this device in its bases (each
    # was allocated from it, or lifted it): some cases set one above, which only a full
    # reconcile (reading every base) notices.
    held = [b.entry.version.get(ME, 0) for b in base.values() if b.entry is not None]
    incremental = plan(changed(base, folder, remotes, tombstones), max([counter, *held]))
    assert plan_differences(full, incremental, previous) == []
    return full


def changed(
    base: dict[str, Base],
    local: dict[str, Entry],
    remotes: list[Remote],
    tombstones: list[tuple[str, Delete]],
) -> set[str]:
    """The paths an incremental pass would reconcile in this state, had the device
    processed, in its last pass, every remote entry its base agrees with exactly: local
    changes, every other remote entry, the tombstones."""
    paths = set(local_changes(sorted(base.items()), local))
    for r in remotes:
        paths |= {p for p, e in r.entries.items() if p not in base or base[p].entry != e}
    return paths | {gone.path for _, gone in tombstones}


def state(b: Base) -> tuple[str, dict[str, int]]:
    """What a base says about its path, for the table."""
    if b.conflict is not None:
        return ("conflict", b.conflict.version)
    if b.refused is not None:
        return ("refused", b.refused.version)
    if b.entry is not None:
        return (label(b.entry), b.entry.version)
    assert b.deleted is not None
    return ("deleted", b.deleted.version)


@dataclass
class Case:
    """Given base/local/remotes/tombstones in a mode, this device must do exactly the
    listed things (every unlisted action list must be empty)."""

    name: str
    base: dict[str, Base] = field(default_factory=dict)
    local: list[Entry] = field(default_factory=list)
    remotes: list[Remote] = field(default_factory=list)
    tombstones: list[tuple[str, Delete]] = field(default_factory=list)
    mode: Mode = "bidirectional"
    unknown: frozenset[str] = frozenset()
    counter: int = 10
    # expectations
    downloads: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    tombstoned: dict[str, dict[str, int]] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    listed: dict[str, tuple[str, dict[str, int]]] | None = None
    after: dict[str, tuple[str, dict[str, int]]] | None = None  # new base of changed paths


V1, V2, V3, V4 = "v1", "v2", "v3", "v4"
COPY = f"a.conflict-desktop-{DESKTOP_AT}.txt"
OPEN = ConflictInfo(
    version={"laptop": 11, "desktop": 2}, copies=[COPY], local=F("a.txt", V2, {"laptop": 11})
)
CONFLICTED = {"a.txt": Base(entry=F("a.txt", V2, {"laptop": 11}), conflict=OPEN)}

CASES = [
    # --- SPEC 4.1: one content wins ---------------------------------------------------
    Case(
        "no_change",
        base=held(F("a", V1, {"laptop": 1})),
        local=[F("a", V1)],
        remotes=[remote("desktop", F("a", V1, {"laptop": 1}))],
        listed={"a": (V1, {"laptop": 1})},
        after={},
    ),
    Case(
        "local_edit",
        base=held(F("a", V1, {"desktop": 1})),
        local=[F("a", V2)],
        remotes=[remote("desktop", F("a", V1, {"desktop": 1}))],
        uploads=["a"],
        listed={"a": (V2, {"desktop": 1, "laptop": 11})},
    ),
    Case(
        "remote_edit",
        base=held(F("a", V1, {"laptop": 1})),
        local=[F("a", V1)],
        remotes=[remote("desktop", F("a", V2, {"laptop": 1, "desktop": 1}))],
        downloads={"a": V2},
        listed={"a": (V2, {"laptop": 1, "desktop": 1})},
    ),
    Case(
        "remote_create",
        remotes=[remote("desktop", F("b", V1, {"desktop": 1}), D("d", {"desktop": 2}))],
        downloads={"b": V1, "d": "dir"},
        listed={"b": (V1, {"desktop": 1}), "d": ("dir", {"desktop": 2})},
    ),
    Case(
        "local_create",
        local=[F("b", V1), D("d"), L("d/l", "../b")],
        uploads=["b"],
        listed={
            "b": (V1, {"laptop": 11}),
            "d": ("dir", {"laptop": 12}),
            "d/l": ("->../b", {"laptop": 13}),
        },
    ),
    Case(
        "local_edit_to_a_later_remote_version_adopts_it",
        base=held(F("a", V1, {"laptop": 1})),
        local=[F("a", V2)],
        remotes=[remote("desktop", F("a", V2, {"laptop": 1, "desktop": 2}))],
        listed={"a": (V2, {"laptop": 1, "desktop": 2})},
    ),
    Case(
        "same_bytes_as_a_concurrent_version_merge_with_a_fresh_one",
        base=held(F("a", V1, {"laptop": 1})),
        local=[F("a", V2)],
        remotes=[remote("desktop", F("a", V2, {"desktop": 2}))],
        uploads=["a"],
        listed={"a": (V2, {"laptop": 11, "desktop": 2})},
    ),
    Case(
        "edit_vs_delete_local_edit_wins",
        base=held(F("a", V1, {"desktop": 1})),
        local=[F("a", V2)],
        tombstones=[("desktop", gone("a", {"desktop": 2}))],
        uploads=["a"],
        listed={"a": (V2, {"desktop": 2, "laptop": 11})},
    ),
    Case(
        "edit_vs_delete_remote_edit_wins",
        base=held(F("a", V1, {"desktop": 1})),
        local=[],
        remotes=[remote("desktop", F("a", V2, {"desktop": 2}))],
        downloads={"a": V2},
        listed={"a": (V2, {"desktop": 2, "laptop": 11})},
    ),
    Case(
        "delete_vs_delete",
        base=held(F("a", V1, {"desktop": 1})),
        tombstones=[("desktop", gone("a", {"desktop": 2}))],
        tombstoned={"a": {"desktop": 2, "laptop": 11}},
        listed={},
        after={"a": ("deleted", {"desktop": 2, "laptop": 11})},
    ),
    Case(
        "local_delete_published",
        base=held(F("a", V1, {"desktop": 1}), F("b", V2, {"laptop": 3})),
        local=[F("b", V2)],
        tombstoned={"a": {"desktop": 1, "laptop": 11}},
        listed={"b": (V2, {"laptop": 3})},
    ),
    Case(
        "remote_delete_applied",
        base=held(F("a", V1, {"laptop": 1})),
        local=[F("a", V1)],
        tombstones=[("desktop", gone("a", {"laptop": 1, "desktop": 2}, of=V1))],
        deletes=["a"],
        listed={},
        after={"a": ("deleted", {"laptop": 1, "desktop": 2})},
    ),
    Case(
        "remote_delete_naming_other_bytes_is_refused",
        base=held(F("a", V1, {"laptop": 1}), F("b", V1, {"laptop": 2})),
        local=[F("a", V1), F("b", V1)],
        tombstones=[
            ("desktop", gone("a", {"laptop": 1, "desktop": 2}, of=V2)),
            ("desktop", gone("b", {"laptop": 2, "desktop": 3})),
        ],
        problems=[("a", "refused_delete"), ("b", "refused_delete")],
        listed={"a": (V1, {"laptop": 1}), "b": (V1, {"laptop": 2})},
        after={
            "a": ("refused", {"laptop": 1, "desktop": 2}),
            "b": ("refused", {"laptop": 2, "desktop": 3}),
        },
    ),
    Case(
        "remote_edit_then_delete_unseen_here_applied",  # desktop held these bytes before
        base=held(F("a", V1, {"desktop": 1})),
        local=[F("a", V1)],
        remotes=[Remote("desktop", DESKTOP_AT, {}, {"a": F("a", V1, {"desktop": 1})})],
        tombstones=[("desktop", gone("a", {"desktop": 3}, of=V2))],
        deletes=["a"],
        listed={},
        after={"a": ("deleted", {"desktop": 3})},
    ),
    Case(
        "delete_by_a_device_never_seen_holding_these_bytes_refused",
        base=held(F("a", V1, {"desktop": 1})),
        local=[F("a", V1)],
        remotes=[Remote("server", SERVER_AT, {}, {"a": F("a", V3, {"server": 1})})],
        tombstones=[("server", gone("a", {"desktop": 1, "server": 2}, of=V2))],
        problems=[("a", "refused_delete")],
        listed={"a": (V1, {"desktop": 1})},
        after={"a": ("refused", {"desktop": 1, "server": 2})},
    ),
    Case(
        "refused_delete_reported_until_the_file_changes",
        base={
            "a": Base(
                entry=F("a", V1, {"laptop": 1}),
                refused=gone("a", {"laptop": 1, "desktop": 2}, of=V2),
            )
        },
        local=[F("a", V1)],
        problems=[("a", "refused_delete")],
        listed={"a": (V1, {"laptop": 1})},
        after={},
    ),
    Case(
        "refused_delete_settled_by_an_edit",
        base={
            "a": Base(
                entry=F("a", V1, {"laptop": 1}),
                refused=gone("a", {"laptop": 1, "desktop": 2}, of=V2),
            )
        },
        local=[F("a", V3)],
        uploads=["a"],
        listed={"a": (V3, {"laptop": 11, "desktop": 2})},
        after={"a": (V3, {"laptop": 11, "desktop": 2})},
    ),
    Case(
        "refused_delete_settled_by_deleting_here",
        base={
            "a": Base(
                entry=F("a", V1, {"laptop": 1}),
                refused=gone("a", {"laptop": 1, "desktop": 2}, of=V2),
            )
        },
        tombstoned={"a": {"laptop": 11, "desktop": 2}},
        listed={},
        after={"a": ("deleted", {"laptop": 11, "desktop": 2})},
    ),
    Case(
        "absent_is_not_delete",
        base=held(F("a", V1, {"laptop": 1})),
        local=[F("a", V1)],
        remotes=[remote("desktop", F("b", V2, {"desktop": 1}))],
        downloads={"b": V2},
        listed={"a": (V1, {"laptop": 1}), "b": (V2, {"desktop": 1})},
    ),
    Case(
        "stale_entry_dominated_by_tombstone",
        base={"a": Base(deleted=gone("a", {"desktop": 1, "laptop": 2}))},
        remotes=[remote("desktop", F("a", V1, {"desktop": 1}))],
        listed={},
        after={},
    ),
    Case(
        "recreate_with_the_deleted_bytes_is_a_new_version",
        base={"a": Base(deleted=gone("a", {"desktop": 1, "laptop": 2}))},
        local=[F("a", V1)],
        remotes=[remote("desktop", F("a", V1, {"desktop": 1}))],
        uploads=["a"],
        listed={"a": (V1, {"desktop": 1, "laptop": 11})},
    ),
    Case(
        "recreate_after_delete_dominates_tombstone",
        base={"a": Base(deleted=gone("a", {"desktop": 1, "laptop": 2}))},
        local=[F("a", V3)],
        remotes=[remote("desktop", F("a", V1, {"desktop": 1}))],
        uploads=["a"],
        listed={"a": (V3, {"desktop": 1, "laptop": 11})},
    ),
    Case(
        "chain_a_b_c",  # desktop edits, server takes desktop's version and edits again
        base=held(F("a", V1, {"desktop": 1})),
        local=[F("a", V1)],
        remotes=[
            remote("desktop", F("a", V2, {"desktop": 2})),
            remote("server", F("a", V3, {"desktop": 2, "server": 1})),
        ],
        downloads={"a": V3},
        listed={"a": (V3, {"desktop": 2, "server": 1})},
    ),
    Case(
        "chain_a_b_c_on_a_new_device",
        remotes=[
            remote("desktop", F("a", V2, {"desktop": 2})),
            remote("server", F("a", V3, {"desktop": 2, "server": 1})),
        ],
        downloads={"a": V3},
        listed={"a": (V3, {"desktop": 2, "server": 1})},
    ),
    Case(
        "new_device_same_bytes_adopts_the_remote_version",
        local=[F("a", V1), D("d")],
        remotes=[
            remote("desktop", F("a", V1, {"desktop": 3}), D("d", {"desktop": 1})),
            remote("server", F("a", V1, {"desktop": 2, "server": 1})),
        ],
        listed={"a": (V1, {"desktop": 3, "server": 1}), "d": ("dir", {"desktop": 1})},
        after={"a": (V1, {"desktop": 3, "server": 1}), "d": ("dir", {"desktop": 1})},
    ),
    Case(
        "mode_change_is_a_version",
        base=held(F("a", V1, {"laptop": 1})),
        local=[F("a", V1, mode=0o600)],
        listed={"a": ("v1@600", {"laptop": 11})},
    ),
    Case(
        "remote_mode_change_applied",
        base=held(F("a", V1, {"laptop": 1}), D("d", {"laptop": 2})),
        local=[F("a", V1), D("d")],
        remotes=[
            remote(
                "desktop",
                F("a", V1, {"laptop": 1, "desktop": 1}, mode=0o600),
                D("d", {"laptop": 2, "desktop": 2}, mode=0o700),
            )
        ],
        downloads={"a": "v1@600", "d": "dir@700"},
    ),
    Case(
        "dir_mode_clash_settles_on_lowest_device_id",
        base=held(D("d", {"laptop": 1})),
        local=[D("d", mode=0o750)],
        remotes=[remote("desktop", D("d", {"laptop": 1, "desktop": 1}, mode=0o700))],
        downloads={"d": "dir@700"},
        listed={"d": ("dir@700", {"laptop": 11, "desktop": 1})},
    ),
    Case(
        "claims_of_this_device_counter_beyond_any_it_made_are_ignored",
        base=held(F("a", V1, {"laptop": 1}), F("b", V1, {"laptop": 2})),
        local=[F("a", V2), F("b", V1)],
        remotes=[remote("desktop", F("a", V3, {"laptop": 2**63 - 1, "desktop": 1}))],
        tombstones=[("server", gone("b", {"laptop": 2**62 + 1}, of=V1))],
        uploads=["a"],
        problems=[("a", "impossible_version"), ("b", "impossible_version")],
        listed={"a": (V2, {"laptop": 11}), "b": (V1, {"laptop": 2})},
    ),
    Case(
        "fresh_version_beats_a_lost_counter",
        counter=0,
        base=held(F("a", V1, {"laptop": 5})),
        local=[F("a", V2)],
        uploads=["a"],
        listed={"a": (V2, {"laptop": 6})},
    ),
    # --- SPEC 4.4: conflicts ----------------------------------------------------------
    Case(
        "concurrent_edit_conflict",
        base=held(F("a.txt", V1, {"laptop": 1})),
        local=[F("a.txt", V2)],
        remotes=[remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2}))],
        copies={COPY: V3},
        conflicts=["a.txt"],
        listed={},
        after={"a.txt": ("conflict", {"laptop": 11, "desktop": 2})},
    ),
    Case(
        "three_way_conflict",
        base=held(F("a.txt", V1, {"laptop": 1})),
        local=[F("a.txt", V2)],
        remotes=[
            remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2})),
            remote("server", F("a.txt", V4, {"laptop": 1, "server": 1})),
        ],
        copies={COPY: V3, f"a.conflict-server-{SERVER_AT}.txt": V4},
        conflicts=["a.txt", "a.txt"],
        listed={},
    ),
    Case(
        "two_devices_holding_the_same_other_version_make_one_copy",
        base=held(F("a.txt", V1, {"laptop": 1})),
        local=[F("a.txt", V2)],
        remotes=[
            remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2})),
            remote("server", F("a.txt", V3, {"laptop": 1, "desktop": 2})),
        ],
        copies={COPY: V3},
        conflicts=["a.txt"],
        listed={},
    ),
    Case(
        "old_local_version_takes_lowest_device_and_copies_the_other",
        base=held(F("a.txt", V1, {"laptop": 1})),
        local=[F("a.txt", V1)],
        remotes=[
            remote("server", F("a.txt", V4, {"laptop": 1, "server": 1})),
            remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2})),
        ],
        downloads={"a.txt": V3},
        copies={f"a.conflict-server-{SERVER_AT}.txt": V4},
        conflicts=["a.txt"],
        listed={},
    ),
    Case(
        "new_device_different_bytes_conflict",
        local=[F("notes/a.md", V2)],
        remotes=[remote("desktop", F("notes/a.md", V1, {"desktop": 3}))],
        copies={f"notes/a.conflict-desktop-{DESKTOP_AT}.md": V1},
        conflicts=["notes/a.md"],
        listed={},
    ),
    Case(
        "type_clash_file_vs_symlink",
        local=[L("a", "target")],
        remotes=[remote("desktop", F("a", V1, {"desktop": 1}))],
        copies={f"a.conflict-desktop-{DESKTOP_AT}": V1},
        conflicts=["a"],
        listed={},
    ),
    Case(
        "type_clash_dir",
        local=[F("a", V1)],
        remotes=[remote("desktop", D("a", {"desktop": 1}))],
        conflicts=["a"],
        problems=[("a", "type_clash")],
        listed={},
    ),
    Case(
        "conflict_copy_not_uploaded",
        base=held(F("a.txt", V2, {"laptop": 11})),
        local=[F("a.txt", V2), F(COPY, V3)],
        listed={"a.txt": (V2, {"laptop": 11})},
        after={},
    ),
    Case(
        "conflict_stays_while_a_copy_remains",
        base=CONFLICTED,
        local=[F("a.txt", V4), F(COPY, V3)],
        remotes=[remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2}))],
        listed={},
        after={},
    ),
    Case(
        "conflict_resolved_by_deleting_copies",
        base=CONFLICTED,
        local=[F("a.txt", V4)],
        remotes=[remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2}))],
        uploads=["a.txt"],
        listed={"a.txt": (V4, {"laptop": 12, "desktop": 2})},
        after={"a.txt": (V4, {"laptop": 12, "desktop": 2})},
    ),
    Case(
        "conflict_resolved_keeping_local_uploads_it",
        base=CONFLICTED,
        local=[F("a.txt", V2)],
        uploads=["a.txt"],
        listed={"a.txt": (V2, {"laptop": 12, "desktop": 2})},
    ),
    Case(
        "conflict_resolved_by_deleting_everything",
        base=CONFLICTED,
        remotes=[remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2}))],
        tombstoned={"a.txt": {"laptop": 12, "desktop": 2}},
        listed={},
    ),
    Case(
        "conflict_resolved_elsewhere_applied",
        base=CONFLICTED,
        local=[F("a.txt", V2), F(COPY, V3)],
        remotes=[remote("desktop", F("a.txt", V4, {"laptop": 11, "desktop": 3}))],
        downloads={"a.txt": V4},
        listed={"a.txt": (V4, {"laptop": 11, "desktop": 3})},
        after={"a.txt": (V4, {"laptop": 11, "desktop": 3})},
    ),
    Case(
        "conflict_resolved_elsewhere_by_deleting_applied",  # the delete names the copy's bytes
        base=CONFLICTED,
        local=[F("a.txt", V2), F(COPY, V3)],
        tombstones=[("desktop", gone("a.txt", {"laptop": 11, "desktop": 3}, of=V3))],
        deletes=["a.txt"],
        listed={},
        after={"a.txt": ("deleted", {"laptop": 11, "desktop": 3})},
    ),
    Case(
        "conflict_resolved_elsewhere_but_edited_here_gets_a_copy",
        base=CONFLICTED,
        local=[F("a.txt", "v5"), F(COPY, V3)],
        remotes=[remote("desktop", F("a.txt", V4, {"laptop": 11, "desktop": 3}), at=SERVER_AT)],
        copies={f"a.conflict-desktop-{SERVER_AT}.txt": V4},
        conflicts=["a.txt"],
        listed={},
        after={"a.txt": ("conflict", {"laptop": 11, "desktop": 3})},
    ),
    Case(
        "type_clash_dir_reported_every_pass",
        base={
            "a": Base(
                entry=F("a", V1, {"laptop": 11}),
                conflict=ConflictInfo(
                    version={"laptop": 11, "desktop": 1}, clashes=["desktop"], local=F("a", V1)
                ),
            )
        },
        local=[F("a", V1)],
        remotes=[remote("desktop", D("a", {"desktop": 1}))],
        problems=[("a", "type_clash")],
        listed={},
        after={},
    ),
    Case(
        "conflict_copy_name_taken_by_other_content",
        base=held(F("a.txt", V1, {"laptop": 1})),
        local=[F("a.txt", V2), F(COPY, "mine")],
        remotes=[remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2}))],
        conflicts=["a.txt"],
        problems=[("a.txt", "conflict_copy")],
        listed={},
    ),
    # --- unknown local state, directories ---------------------------------------------
    Case(
        "unknown_path_untouched",
        base=held(F("a", V1, {"laptop": 1}), F("b", V1, {"laptop": 2})),
        local=[F("b", V1)],
        unknown=frozenset({"a", "b"}),
        remotes=[remote("desktop", F("b", V2, {"laptop": 2, "desktop": 1}))],
        tombstones=[("desktop", gone("a", {"laptop": 1, "desktop": 2}))],
        listed={"a": (V1, {"laptop": 1}), "b": (V1, {"laptop": 2})},
        after={},
    ),
    Case(
        "dir_delete_deepest_first",
        base=held(
            D("d", {"laptop": 1}),
            D("d/e", {"laptop": 2}),
            F("d/e/f", V1, {"laptop": 3}),
            F("d/g", V2, {"laptop": 4}),
        ),
        local=[D("d"), D("d/e"), F("d/e/f", V1), F("d/g", V2)],
        tombstones=[
            ("desktop", gone(p, {"laptop": n, "desktop": 1}, k, of))
            for p, n, k, of in [
                ("d", 1, "dir", None),
                ("d/e", 2, "dir", None),
                ("d/e/f", 3, "file", V1),
                ("d/g", 4, "file", V2),
            ]
        ],
        deletes=["d/e/f", "d/e", "d/g", "d"],
        listed={},
    ),
    Case(
        "local_folder_delete_is_one_delete_per_path",
        base=held(D("d", {"laptop": 1}), F("d/a", V1, {"laptop": 2}), F("d/b", V2, {"laptop": 3})),
        tombstoned={"d": {"laptop": 11}, "d/a": {"laptop": 12}, "d/b": {"laptop": 13}},
        listed={},
    ),
    # --- SPEC 4.2: modes --------------------------------------------------------------
    Case(
        "upload_only_ignores_remotes_and_tombstones",
        mode="upload-only",
        base=held(F("a", V1, {"laptop": 1}), F("b", V1, {"laptop": 2})),
        local=[F("a", V1), F("b", V1), F("c", V3)],
        remotes=[remote("desktop", F("a", V2, {"laptop": 1, "desktop": 1}), F("z", V1))],
        tombstones=[("desktop", gone("b", {"laptop": 2, "desktop": 2}))],
        uploads=["c"],
        listed={"a": (V1, {"laptop": 1}), "b": (V1, {"laptop": 2}), "c": (V3, {"laptop": 11})},
    ),
    Case(
        "download_only_pulls_and_publishes_nothing",
        mode="download-only",
        base=held(F("a", V1, {"desktop": 1}), F("b", V1, {"desktop": 2})),
        local=[F("a", V1), F("b", V3), F("c", V3)],
        remotes=[remote("desktop", F("a", V2, {"desktop": 3}), F("b", V1, {"desktop": 2}))],
        downloads={"a": V2},
        listed={},
        after={
            "a": (V2, {"desktop": 3}),
            "b": (V3, {"desktop": 2, "laptop": 11}),
            "c": (V3, {"laptop": 12}),
        },
    ),
    Case(
        "download_only_remote_change_to_local_edit_is_conflict",
        mode="download-only",
        base=held(F("a.txt", V1, {"desktop": 1})),
        local=[F("a.txt", V2)],
        remotes=[remote("desktop", F("a.txt", V3, {"desktop": 2}))],
        copies={COPY: V3},
        conflicts=["a.txt"],
        listed={},
    ),
    Case(
        "download_only_applies_remote_deletes_but_tombstones_nothing",
        mode="download-only",
        base=held(F("a", V1, {"desktop": 1}), F("b", V1, {"desktop": 2})),
        local=[F("a", V1)],
        tombstones=[("desktop", gone("a", {"desktop": 3}, of=V1))],
        deletes=["a"],
        listed={},
        after={"a": ("deleted", {"desktop": 3}), "b": ("deleted", {"desktop": 2, "laptop": 11})},
    ),
    Case(
        "archive_only_pulls_and_keeps_remotely_deleted_files",
        mode="archive-only",
        base=held(F("a", V1, {"desktop": 1})),
        local=[F("a", V1)],
        remotes=[remote("desktop", F("b", V2, {"desktop": 2}))],
        tombstones=[("desktop", gone("a", {"desktop": 3}))],
        downloads={"b": V2},
        listed={},
        after={"a": (V1, {"desktop": 3}), "b": (V2, {"desktop": 2})},
    ),
    Case(
        "archive_only_downloads_a_later_recreation",
        mode="archive-only",
        base=held(F("a", V1, {"desktop": 3})),
        local=[F("a", V1)],
        remotes=[remote("desktop", F("a", V4, {"desktop": 4}))],
        downloads={"a": V4},
        listed={},
    ),
    Case(
        "new_device_with_superseded_bytes_conflicts",
        local=[F("a.txt", V1)],
        remotes=[
            remote("desktop", F("a.txt", V1, {"desktop": 1})),
            remote("server", F("a.txt", V2, {"desktop": 1, "server": 1})),
        ],
        copies={f"a.conflict-server-{SERVER_AT}.txt": V2},
        conflicts=["a.txt"],
        listed={},
    ),
    Case(
        "seeded_archive_only_adopts_the_remote_versions",
        mode="archive-only",
        local=[F("a", V1), D("d"), F("d/b", V2)],
        remotes=[
            remote("desktop", F("a", V1, {"desktop": 3}), D("d", {"desktop": 1})),
            remote("server", F("d/b", V2, {"server": 2})),
        ],
        listed={},
        after={
            "a": (V1, {"desktop": 3}),
            "d": ("dir", {"desktop": 1}),
            "d/b": (V2, {"server": 2}),
        },
    ),
    Case(
        "seeded_download_only_with_other_bytes_conflicts",
        mode="download-only",
        local=[F("a.txt", V2)],
        remotes=[remote("desktop", F("a.txt", V1, {"desktop": 3}))],
        copies={COPY: V1},
        conflicts=["a.txt"],
        after={"a.txt": ("conflict", {"desktop": 3, "laptop": 11})},
    ),
    Case(
        "archive_only_never_publishes_local_changes",
        mode="archive-only",
        base=held(F("a", V1, {"desktop": 1})),
        local=[F("a", V2), F("c", V3)],
        listed={},
        after={"a": (V2, {"desktop": 1, "laptop": 11}), "c": (V3, {"laptop": 12})},
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_case(case: Case) -> None:
    plan = run(
        base=case.base,
        local=case.local,
        remotes=case.remotes,
        tombstones=case.tombstones,
        mode=case.mode,
        unknown=case.unknown,
        counter=case.counter,
    )
    assert {d.path: label(d.entry) for d in plan.downloads} == case.downloads
    assert {c.copy_path: label(c.entry) for c in plan.conflict_copies} == case.copies
    assert [d.path for d in plan.local_deletes] == case.deletes
    assert {t.path: t.version for t in plan.tombstones} == case.tombstoned
    assert [u.path for u in plan.uploads] == case.uploads
    assert [c.path for c in plan.conflicts] == case.conflicts
    assert [(p.path, p.kind) for p in plan.problems] == case.problems
    if case.listed is not None:
        assert {e.path: (label(e), e.version) for e in plan.listed()} == case.listed
    if case.after is not None:
        assert {p: state(b) for p, b in plan.base.items()} == case.after


def test_tombstones_for_unknown_paths_are_offered_again() -> None:
    tombstone = ("desktop", gone("a", {"laptop": 1, "desktop": 2}))
    plan = run(
        base=held(F("a", V1, {"laptop": 1})), unknown=frozenset({"a"}), tombstones=[tombstone]
    )
    assert plan.deferred_tombstones == [tombstone]
    assert plan.local_deletes == [] and plan.base == {}


def test_counter_advances_once_per_fresh_version() -> None:
    plan = run(local=[F("a", V1), F("b", V2)], counter=41)
    assert plan.counter == 43
    assert run(base=held(F("a", V1, {"laptop": 41})), local=[F("a", V1)], counter=41).counter == 41


def test_base_survives_a_round_trip_through_the_state_file() -> None:
    """The engine stores each Base as bytes; a conflict must come back identical."""
    plan = run(
        base=held(F("a.txt", V1, {"laptop": 1})),
        local=[F("a.txt", V2)],
        remotes=[remote("desktop", F("a.txt", V3, {"laptop": 1, "desktop": 2}))],
    )
    stored = plan.base["a.txt"]
    assert stored.conflict is not None and stored.conflict.since == NOW
    assert msgspec.json.decode(msgspec.json.encode(stored), type=Base) == stored


def chunked(entry: Entry, *pieces: int) -> Entry:
    """`entry` stored in chunks of these sizes (its size made their sum: SPEC 1.6)."""
    chunks = [Chunk(hashlib.sha256(b"%d" % i).hexdigest(), n) for i, n in enumerate(pieces)]
    return msgspec.structs.replace(entry, size=sum(pieces), chunks=chunks)


BIG = (9 << 20, 10 << 20)  # a 19 MiB file: chunked (over 16 MiB)


@pytest.mark.parametrize(
    ("base", "local"),
    [
        pytest.param({}, F("big.iso", V1), id="seeded-with-the-same-bytes"),
        pytest.param(
            held(F("big.iso", V1, {"desktop": 5, "laptop": 3})), F("big.iso", V1), id="agreed"
        ),
    ],
)
def test_a_chunk_list_passes_through_when_the_bytes_are_the_same(
    base: dict[str, Base], local: Entry
) -> None:
    """A local file without a chunk list of its own (this device cuts only files over
    16 MiB): another device's chunk list for the same bytes (the same version, or one it
    adopts) is what its own tree lists (SPEC 1.6), not a change."""
    theirs = chunked(F("big.iso", V1, {"desktop": 5, "laptop": 3}), *BIG)
    plan = run(base=base, local=[local], remotes=[remote("desktop", theirs)])
    assert plan.downloads == [] and plan.conflicts == []
    (listed,) = plan.listed()
    assert listed.chunks == theirs.chunks
    assert plan.base["big.iso"].entry == listed


def test_a_chunk_list_arrives_with_the_download_of_a_chunked_file() -> None:
    theirs = chunked(F("big.iso", V2, {"desktop": 5}), *BIG)
    plan = run(remotes=[remote("desktop", theirs)])
    (download,) = plan.downloads
    assert download.entry.chunks == theirs.chunks
