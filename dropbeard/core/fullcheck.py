"""The safety net of the incremental pass (pure): how the plan of the changed paths
differs from the plan a full reconcile of the same state makes. The two must agree on
everything the pass does — the folder, the bases it commits, what it publishes, the
problems it reports, the counter — or the incremental pass missed a path. Tests (and
`sync --check-full`) compare them after every pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dropbeard.core.model import Entry
from dropbeard.core.plan import Plan

_COMPARED = (
    "publishes",
    "downloads",
    "conflict_copies",
    "local_deletes",
    "uploads",
    "tombstones",
    "base",
    "conflicts",
    "problems",
    "removals",
    "counter",
)
SHOWN = 5
"""Paths named per differing part."""


def plan_differences(
    full: Plan, incremental: Plan, previous: Mapping[str, Entry] | None = None
) -> list[str]:
    """One line per part of the plans that differs (none: they agree). `previous` is the
    listing this device published last, which the incremental plan's listing changes."""
    found = [_differs(name, getattr(full, name), getattr(incremental, name)) for name in _COMPARED]
    deferred = sorted(full.deferred_tombstones, key=repr)
    found.append(
        _differs("deferred_tombstones", deferred, sorted(incremental.deferred_tombstones, key=repr))
    )
    whole = {e.path: e for e in full.listed()}
    changed = {e.path: e for e in incremental.listed(previous or {})}
    found.append(_differs("listing", whole, changed))
    return [line for line in found if line is not None]


def _differs(name: str, full: Any, incremental: Any) -> str | None:
    if full == incremental:
        return None
    if isinstance(full, dict) and isinstance(incremental, dict):
        paths = sorted(
            p for p in full.keys() | incremental.keys() if full.get(p) != incremental.get(p)
        )
        return f"{name}: {_named(paths)} differ"
    if isinstance(full, list) and isinstance(incremental, list):
        only_full = [repr(x) for x in full if x not in incremental]
        only_inc = [repr(x) for x in incremental if x not in full]
        return f"{name}: full only {_named(only_full)}; incremental only {_named(only_inc)}"
    return f"{name}: full {full!r}, incremental {incremental!r}"


def _named(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more if items else "none"
