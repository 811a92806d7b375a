"""The mass-delete guard on a Plan (SPEC 6): its verdict for one pass, and the plan with
its destructive part removed (pure).

A pass whose local deletes exceed both 50 files and 50 % of the tracked files, or whose
walk found the root empty (no file, folder or link at all) while files are tracked, halts
its deletes until the person runs `dropbeard sync --allow-mass-delete`; additions and
edits still sync. Deleting the last tracked file by hand (renaming it, or replacing the
only folder) is an ordinary change: the root still holds something.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from dropbeard.core.plan import Base, Plan

MAX_DELETES = 50
"""Local deletes allowed in one pass whatever the share of tracked files."""

MAX_SHARE = 0.5
"""Share of the tracked files one pass may delete once past `MAX_DELETES`."""


class Halt(msgspec.Struct, frozen=True, kw_only=True):
    """Why a pass refused to delete: `reason` is one human line; `deletes` of `tracked`
    files would have been deleted."""

    reason: str
    deletes: int
    tracked: int


def tracked_files(base: Iterable[Base]) -> int:
    """How many files (and symlinks) the base tracks: the `tracked_count` for the guard.
    Directories are not counted; paths in conflict are."""
    return sum(1 for b in base if b.entry is not None and b.entry.type != "dir")


def counts_tracked(plan: Plan, *, root_empty: bool) -> bool:
    """True if `check_mass_delete`'s verdict on `plan` depends on how many files are
    tracked (counting them reads every base): the root is empty, or the plan deletes more
    than `MAX_DELETES` files here. Otherwise any count gives the same verdict."""
    deletes = _file_deletes(plan)
    return deletes > 0 and (root_empty or deletes > MAX_DELETES)


def check_mass_delete(plan: Plan, tracked_count: int, *, root_empty: bool) -> Halt | None:
    """A Halt if `plan`'s local deletes must not go ahead, else None.

    `tracked_count` is `tracked_files` of the base before the pass; `root_empty` says the
    walk found nothing at all in the root. Only deletes found locally count (files and
    symlinks of `plan.removals`), not remote deletes applied here.
    """
    deletes = _file_deletes(plan)
    if deletes == 0:
        return None
    hint = "run `dropbeard sync --allow-mass-delete` if this is intended"
    if root_empty:
        return Halt(
            reason=f"refusing to delete: the root is empty but {tracked_count} files are "
            f"tracked (is it unmounted or emptied?); {hint}",
            deletes=deletes,
            tracked=tracked_count,
        )
    if deletes > MAX_DELETES and deletes > MAX_SHARE * tracked_count:
        return Halt(
            reason=f"refusing to delete {deletes} of {tracked_count} tracked files "
            f"(more than {MAX_DELETES} and more than {MAX_SHARE:.0%}); {hint}",
            deletes=deletes,
            tracked=tracked_count,
        )
    return None


def without_local_deletes(plan: Plan) -> Plan:
    """`plan` minus its local deletes: no tombstones for them, their base unchanged (so
    they count as tracked and missing again next pass) and their entries kept in the
    published listing. A folder this device replaced with a file or symlink is one of them (its
    replacement deletes what was below it): its folder entry stays published. Downloads,
    remote deletes, other uploads and edits are untouched."""
    removed = {r.path: r for r in plan.removals}
    if not removed:
        return plan
    listing = dict(plan.listing)
    if plan.publishes:
        listing.update((r.path, r.published) for r in removed.values())
    return msgspec.structs.replace(
        plan,
        tombstones=[t for t in plan.tombstones if t.path not in removed],
        listing=listing,
        uploads=[e for e in plan.uploads if e.path not in removed],
        base={p: b for p, b in plan.base.items() if p not in removed},
        removals=[],
    )


class DeleteGuard(msgspec.Struct, frozen=True, kw_only=True):
    """The mass-delete verdict of one pass (SPEC 6), decided once on its first plan.

    `halt` says why the guard tripped (None: it did not); `allowed` is
    `--allow-mass-delete`. The same verdict is applied to every re-plan of the pass: a
    re-plan only makes more paths unknown, and an unknown path is never deleted, so it has
    no more deletes than the plan the verdict was decided on.
    """

    halt: Halt | None = None
    allowed: bool = False

    @property
    def holds_deletes(self) -> bool:
        """True if the plan's local deletes must be taken out."""
        return self.halt is not None and not self.allowed

    @property
    def reported(self) -> str | None:
        """The halt to report (`status`, exit 1): None if the guard did not trip or the
        person allowed the deletes."""
        return self.halt.reason if self.halt is not None and not self.allowed else None

    def applied_to(self, plan: Plan) -> Plan:
        """`plan`, without its local deletes if they are held."""
        return without_local_deletes(plan) if self.holds_deletes else plan


def guard_deletes(plan: Plan, tracked: int, *, root_empty: bool, allow: bool) -> DeleteGuard:
    """The guard's verdict on `plan`, whose pass started with `tracked` files tracked
    (`core.safety.tracked_files`; any count when `counts_tracked` says it does not
    matter) and whose walk found the root empty or not (`root_empty`)."""
    halt = check_mass_delete(plan, tracked, root_empty=root_empty)
    return DeleteGuard(halt=halt, allowed=allow)


def _file_deletes(plan: Plan) -> int:
    return sum(1 for r in plan.removals if _is_file(r.previous))


def _is_file(previous: Base) -> bool:
    entry = previous.entry
    return entry is None or entry.type != "dir"
