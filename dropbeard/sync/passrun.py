"""What one pass runs against: the caller's options, and the fixed setting every step of
the pipeline shares (no IO of its own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dropbeard.core.config import RootConfig
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Progress, Store
from dropbeard.sync.root import RootPaths
from dropbeard.sync.state import State


@dataclass
class PassOptions:
    dry_run: bool = False
    allow_mass_delete: bool = False
    concurrency: int = 8
    progress: Progress | None = None
    #: rescan only these paths (daemon, after watcher events); None = the whole root
    only: frozenset[str] | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class PassRun:
    """One pass of one root: where it is (`paths`, `cfg`, `keys`), what it reads and
    writes (`state`, `store`), how (`opts`), and the one `now` every step uses (read from
    `opts.now` once, when the pass begins)."""

    paths: RootPaths
    cfg: RootConfig
    keys: RootKeys
    state: State
    store: Store
    opts: PassOptions
    now: datetime

    @classmethod
    def begin(
        cls, paths: RootPaths, cfg: RootConfig, state: State, store: Store, opts: PassOptions
    ) -> PassRun:
        return cls(paths, cfg, RootKeys(cfg.root_id), state, store, opts, opts.now())
