"""What deciding one path takes and gives (pure): the candidates (versions of the path)
it weighs, what the decisions of one pass share (`PassContext`), and the `Outcome` that
goes into the plan. The cases themselves are `dropbeard.core.cases`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import (
    Base,
    Conflict,
    ConflictCopy,
    Download,
    LocalDelete,
    Mode,
    Removal,
)
from dropbeard.core.problems import Problem
from dropbeard.core.version import bump


class Candidate(msgspec.Struct, frozen=True):
    """One version of a path: an entry (content) or a delete. `fresh` marks this device's
    local change, bumped during this pass. `held`, for another device's delete: what that
    device was last seen holding at the path (`Remote.held_before`)."""

    version: dict[str, int]
    device_id: str
    entry: Entry | None = None
    delete: Delete | None = None
    snapshot: str | None = None
    fresh: bool = False
    held: Entry | None = None


class PassContext(msgspec.Struct):
    """What every path's decision in one pass shares: this device, its mode, the time,
    the conflict copies on disk, and the version counter fresh versions advance."""

    device_id: str
    mode: Mode
    now: datetime
    copies_on_disk: Mapping[str, Entry]
    counter: int

    def next_version(self, vector: Mapping[str, int]) -> dict[str, int]:
        """A fresh local version after `vector` (allocates the next counter)."""
        self.counter += 1
        return bump(vector, self.device_id, self.counter)


class Replacement(msgspec.Struct, frozen=True):
    """A download that replaces local content of another type (file, folder, symlink):
    the local candidate, the winning candidate downloaded over it, and the merged version
    it wins with. Kept so that the pass can still make it a conflict when the local folder
    it would replace holds paths that survive (`dropbeard.core.typeclash`)."""

    local: Candidate
    incoming: Candidate
    version: dict[str, int]


class Outcome(msgspec.Struct):
    """What the decision for one path puts in the plan: the path's new base and the
    actions, conflicts and problems it needs."""

    base: Base
    replaced: Replacement | None = None
    download: Download | None = None
    local_delete: LocalDelete | None = None
    copies: list[ConflictCopy] = msgspec.field(default_factory=list)
    upload: Entry | None = None
    tombstone: Delete | None = None
    conflicts: list[Conflict] = msgspec.field(default_factory=list)
    problems: list[Problem] = msgspec.field(default_factory=list)
    removal: Removal | None = None
    deferred: list[tuple[str, Delete]] = msgspec.field(default_factory=list)
