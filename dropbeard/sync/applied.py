"""What applying a plan did (`Applied`), and why a path was refused (IO-free)."""

from __future__ import annotations

import msgspec

from dropbeard.core.problems import Problem
from dropbeard.sync.state import StatRow


class Applied(msgspec.Struct):
    downloaded: int = 0
    downloaded_bytes: int = 0
    #: bytes of chunks taken from local files instead of the bucket
    reused_bytes: int = 0
    copied_locally: int = 0
    deleted: int = 0
    failed: set[str] = msgspec.field(default_factory=set)
    #: folders deleted elsewhere that stay here for files this device does not sync
    kept: list[str] = msgspec.field(default_factory=list)
    problems: list[Problem] = msgspec.field(default_factory=list)
    #: stat-cache rows for files written this pass, so they are not re-hashed
    stats: dict[str, StatRow] = msgspec.field(default_factory=dict)


class Refused(Exception):
    """A path this apply will not write, as the problem to record for it: `kind` is
    `unsafe_path` (outside the root, through a symlink) or `type_clash` (a folder that
    still holds what this device does not track)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class UnsafePath(Refused):
    def __init__(self, message: str) -> None:
        super().__init__("unsafe_path", message)
