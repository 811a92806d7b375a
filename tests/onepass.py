"""One pass of the engine over a root, as `dropbeard sync` runs it (its config and state
opened, the root locked), with options a CLI run cannot set: a batch bound, a clock."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec

from dropbeard.core.model import Entry
from dropbeard.core.plan import Base, publishable
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online, root_lock
from dropbeard.sync.state import State


def run_one_pass(root: Path, store: Store, opts: PassOptions) -> Summary:
    """Run one pass over `root` against `store` in a fresh event loop; its summary."""

    async def go() -> Summary:
        paths = RootPaths(root)
        cfg, state = open_online(paths)
        try:
            with root_lock(paths):
                return await run_pass(paths, cfg, state, store, opts)
        finally:
            state.close()

    return anyio.run(go)


def agreed_entries(root: Path) -> dict[str, Entry]:
    """What the agreed bases in `root`'s state.sqlite publish: path -> entry."""
    state = State.open(RootPaths(root).state)
    try:
        bases = {p: msgspec.json.decode(b, type=Base) for p, b in state.bases().items()}
    finally:
        state.close()
    return {p: e for p, b in bases.items() if (e := publishable(b)) is not None}
