"""Paths below a file or symlink (pure): a pass must leave a tree, on disk and in the
tree, so nothing that survives may sit below what ends up a file or symlink (SPEC 4.1,
type clashes). Reconcile asks two things here, after each path's own case:

- *A folder here, a file or symlink from elsewhere* (`folders_kept`): another device
  replaced the folder, but something below it survives this pass (changed here, or
  edited on a third device). The folder stays and the incoming item is written beside it
  as a conflict copy (`cases.folder_kept`).
- *A file or symlink that stays, with arrivals below it* (`blocker`): this device
  replaced the folder, or keeps a file where another device grew a folder, while other
  devices changed paths below it. Those arrivals cannot be placed: they keep their old
  base, stay out of this device's tree, and the clash is a problem on the file or
  symlink (`clash_problems`), reported every pass until a person settles it. Nothing is
  lost: they stay on the devices that hold them, which see the conflict from their side.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence

import msgspec

from dropbeard.core.decision import Outcome
from dropbeard.core.model import Entry
from dropbeard.core.problems import Problem

SHOWN = 3
"""Paths named in a clash problem; the rest are counted."""


class Decided(msgspec.Struct, frozen=True):
    """One path decided this pass (not the cheap unchanged case): its local content and
    the outcome of its case; `unknown` when its local state was unknown while other
    devices had something for it (left as it was, to be decided again next pass)."""

    content: Entry | None
    outcome: Outcome
    unknown: bool = False


def replaces_folder(d: Decided) -> bool:
    """A file or symlink is to be downloaded over the local folder: the folder stays
    instead if anything below it survives (`folders_kept`)."""
    download = d.outcome.download
    return (
        d.outcome.replaced is not None
        and d.content is not None
        and d.content.type == "dir"
        and download is not None
        and download.entry.type != "dir"
    )


def blocker(path: str, decided: Mapping[str, Decided], local: Mapping[str, Entry]) -> str | None:
    """The top-most folder of `path` that ends this pass as a file or symlink, if any.

    `path` survives the pass but is not on disk here; `decided` holds the paths decided
    so far (every folder of `path`: they sort before it). A folder a file or symlink is
    to replace counts as a folder: `path` surviving below it keeps it one."""
    cut = path.find("/")
    while cut != -1:
        above = path[:cut]
        if _final_type(above, decided, local) in ("file", "symlink"):
            return above
        cut = path.find("/", cut + 1)
    return None


def folders_kept(
    decided: Mapping[str, Decided],
    local: Mapping[str, Entry],
    paths: Callable[[], Sequence[str]],
) -> list[str]:
    """The local folders a file or symlink was to replace, below which something
    survives: they stay. `paths()` gives every path reconciled and every local one, sorted
    (asked only when some folder is to be replaced); one not in `decided` is unchanged, or
    was held below a file or symlink (then not on disk here)."""
    replaced = [path for path, d in decided.items() if replaces_folder(d)]
    if not replaced:
        return []
    scope = paths()
    return sorted(p for p in replaced if _anything_survives_below(p, decided, local, scope))


def clash_problems(
    held: Mapping[str, str], decided: Mapping[str, Decided], local: Mapping[str, Entry]
) -> list[Problem]:
    """One `type_clash` problem per file or symlink with paths held below it (`held`:
    path -> the file or symlink above it)."""
    below: dict[str, list[str]] = {}
    for path, above in sorted(held.items()):
        below.setdefault(above, []).append(path)
    problems = []
    for above, paths in sorted(below.items()):
        kind = _final_type(above, decided, local) or "file"
        shown = ", ".join(paths[:SHOWN])
        more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
        problems.append(
            Problem(
                path=above,
                kind="type_clash",
                message=f"{above} is a {kind} here, but other devices changed paths below "
                f"it ({shown}{more}); they were not placed (type clash)",
            )
        )
    return problems


def _anything_survives_below(
    folder: str, decided: Mapping[str, Decided], local: Mapping[str, Entry], paths: Sequence[str]
) -> bool:
    prefix = folder + "/"
    for path in paths[bisect_left(paths, prefix) :]:
        if not path.startswith(prefix):
            return False
        d = decided.get(path)
        if d is None:
            if path in local:
                return True  # unchanged here
        elif d.outcome.local_delete is None and d.outcome.base.entry is not None:
            return True
    return False


def _final_type(
    path: str, decided: Mapping[str, Decided], local: Mapping[str, Entry]
) -> str | None:
    """What `path` holds once the plan is applied: what is downloaded there, else nothing
    if it is deleted, else what is there now. A folder a file or symlink was to replace
    is still a folder."""
    d = decided.get(path)
    if d is not None and not replaces_folder(d):
        if d.outcome.download is not None:
            return d.outcome.download.entry.type
        if d.outcome.local_delete is not None:
            return None
    content = local.get(path)
    return content.type if content is not None else None
