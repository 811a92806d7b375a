"""What one pass runs against: the caller's options, and the fixed setting every step of
the pipeline shares (no IO of its own)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from dropbeard.core.changes import PathChange
from dropbeard.core.config import RootConfig
from dropbeard.core.daemonconfig import DEFAULT_CONCURRENCY
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.folderrows import BATCH_PATHS
from dropbeard.sync.meter import PassMeter
from dropbeard.sync.metered import MeteredStore
from dropbeard.sync.root import RootPaths
from dropbeard.sync.state import State
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trees import TreeStore


class PassOptions(msgspec.Struct):
    dry_run: bool = False
    allow_mass_delete: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    #: told what the pass is doing (stages, totals, transfers by path), for a display
    meter: PassMeter | None = None
    #: called once per changed path after the pass committed (planned ones on a dry run)
    on_change: Callable[[PathChange], None] | None = None
    #: rescan only these paths (daemon, after watcher events); None = the whole root
    only: frozenset[str] | None = None
    #: reconcile every path, not only those that changed (`dropbeard.sync.passscope`)
    full_reconcile: bool = False
    #: a safety net for tests and debugging: on a pass over the whole root, plan a full
    #: reconcile too and fail the pass (before it changes anything) if the plans differ
    check_full: bool = False
    #: a pass over the whole root commits new paths in batches of about this many while
    #: it walks (`dropbeard.sync.batches`)
    batch_paths: int = BATCH_PATHS
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: the node cache of `.dropbear/trees/`, kept by a caller that runs many passes (the
    #: daemon) so that each does not read its index again; None: one for this pass
    node_cache: NodeCache | None = None


class PassRun(msgspec.Struct, frozen=True):
    """One pass of one root: where it is (`paths`, `cfg`, `keys`), what it reads and
    writes (`state`, `store`, and the tree nodes through `trees`), how (`opts`), the one
    `now` every step uses (read from `opts.now` once, when the pass begins), and the one
    budget of requests and bytes in flight its downloads and uploads share
    (`opts.concurrency` requests)."""

    paths: RootPaths
    cfg: RootConfig
    keys: RootKeys
    state: State
    store: Store
    opts: PassOptions
    now: datetime
    budget: TransferBudget
    trees: TreeStore

    @classmethod
    def begin(
        cls, paths: RootPaths, cfg: RootConfig, state: State, store: Store, opts: PassOptions
    ) -> PassRun:
        """The pass's setting; its store reports transfers to `opts.meter` if there is one."""
        if opts.meter is not None:
            store = MeteredStore(store, opts.meter)
        budget = TransferBudget(max(1, opts.concurrency))
        keys = RootKeys(cfg.root_id)
        cache = opts.node_cache or NodeCache(paths.trees)
        trees = TreeStore(
            store,
            keys,
            cache,
            concurrency=max(opts.concurrency, 8),
            # nodes are small requests: read as many at once as the budget runs small ones
            reads=max(budget.small_requests, 8),
            budget=budget,
            write_behind=True,
        )
        return cls(paths, cfg, keys, state, store, opts, opts.now(), budget, trees)
