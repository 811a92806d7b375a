"""Settling a conflict by file operations (`dropbeard resolve`); the next pass publishes
the result as a version dominating every version in the conflict (IO: local files)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.errors import UsageError
from dropbeard.core.plan import Base
from dropbeard.sync.disknames import DiskNames
from dropbeard.sync.state import State


def conflict_base(state: State, rel: str) -> Base:
    data = state.bases_of([rel]).get(rel)
    base = None if data is None else msgspec.json.decode(data, type=Base)
    if base is None or base.conflict is None:
        raise UsageError(f"{rel} is not in conflict (dropbeard status lists conflicts)")
    return base


def settle(root: Path, rel: str, base: Base, keep: str) -> list[str]:
    """Make the folder hold the kept version at `rel` and no conflict copy of it, each
    name in the spelling the disk holds. Returns what was done, for the person."""
    assert base.conflict is not None
    names = DiskNames(root, {})
    copies = [c for c in base.conflict.copies if os.path.lexists(root / names.disk(c))]
    done: list[str] = []
    if keep != "local":
        chosen = [c for c in copies if (parse_conflict_name(c) or ("", "", ""))[1] == keep]
        if not chosen:
            devices = sorted({(parse_conflict_name(c) or ("", "?", ""))[1] for c in copies})
            raise UsageError(
                f"no conflict copy of {rel} from device {keep!r} is on disk "
                f"(copies from: {', '.join(devices) or 'none'}; or use --keep local)"
            )
        keeper = sorted(chosen)[-1]  # the newest copy from that device
        os.replace(root / names.disk(keeper), root / names.disk(rel))
        done.append(f"kept {keeper} as {rel}")
        copies.remove(keeper)
    for copy in copies:
        os.unlink(root / names.disk(copy))
        done.append(f"removed {copy}")
    return done
