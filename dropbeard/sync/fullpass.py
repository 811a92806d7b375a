"""What a pass gathered before planning, and the safety net of the incremental pass: the
same state planned by a full reconcile (every base, every path), which must plan the same
(IO: state.sqlite through `Bases`, in a worker thread). Run by `sync --check-full` and by
the tests after every pass over a whole root, so a path the pass should have looked at and
did not fails the pass before it changes anything.
"""

from __future__ import annotations

import anyio
import msgspec

from dropbeard.core.errors import DropbeardError
from dropbeard.core.fullcheck import plan_differences
from dropbeard.core.passrules import PlanInputs
from dropbeard.core.plan import Plan
from dropbeard.core.problems import Problem
from dropbeard.sync.bases import Bases
from dropbeard.sync.batches import Done
from dropbeard.sync.inputs import (
    Ignore,
    Loaded,
    RemoteSide,
    plan_inputs,
)
from dropbeard.sync.localscan import LocalScan, holds_something
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.passscope import Changes, Scope, find_changes


class PassIn(msgspec.Struct, frozen=True):
    """What one pass gathered before planning: its `loaded` state, the ignore rules, the
    other devices, the scan, the bases, the paths it reconciles, reconcile's inputs, and
    the problems its first step (this device's own head) found."""

    loaded: Loaded
    ignore: Ignore
    remote: RemoteSide
    local: LocalScan
    bases: Bases
    changes: Changes
    inputs: PlanInputs
    found: list[Problem]
    #: what the batches committed during the scan did (`dropbeard.sync.batches`)
    batched: Done = msgspec.field(default_factory=Done)


class PlanMismatch(DropbeardError):
    """The incremental plan of a pass is not the full reconcile's (a bug: please report)."""


async def check_against_full(run: PassRun, pass_in: PassIn, plan: Plan) -> None:
    """Raise PlanMismatch if `plan`, the pass's plan of what changed, differs from the
    plan of a full reconcile of the same state (the pass scanned the whole root). A device
    whose tree fails to read in full while the pass read what it needed of it cannot be
    compared: the check is left out then."""
    every_entry = await pass_in.remote.looked_up(run.trees, None)
    if every_entry.unreadable != pass_in.remote.unreadable:
        return

    def differences() -> list[str]:
        root = run.paths.root
        every = find_changes(
            pass_in.bases,
            Scope(True, None),
            pass_in.local.entries,
            (),
            (),
            pass_in.ignore.rules,
            lambda path: holds_something(root / path),
        )
        inputs = plan_inputs(
            run,
            pass_in.loaded,
            pass_in.local,
            every_entry,
            every,
            pass_in.ignore,
            pass_in.bases,
        )
        full = inputs.plan(pass_in.local.result.unreadable)
        # what this device published last: what its agreed bases publish
        previous = pass_in.bases.listing() if plan.publishes else {}
        found = plan_differences(full, plan, previous)
        if every.untracked:
            found.append(f"untracked: {', '.join(every.untracked[:5])} not seen as ignored")
        return found

    found = await anyio.to_thread.run_sync(differences)
    if found:
        raise PlanMismatch(
            "checking this pass against a full reconcile: the plans differ ("
            + "; ".join(found)
            + "); nothing was changed — please report this"
        )
