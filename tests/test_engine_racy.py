"""The stat cache never trusts a file changed within the racy window before a scan: a
same-size rewrite inside one timestamp tick would otherwise keep every stamp it compares
(git's "racily clean" problem), and the change would never be synced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from dropbeard.cli.main import main
from dropbeard.core.summary import Summary
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online


def _pass(root: Path, remote: Path, now: Callable[[], datetime]) -> Summary:
    async def go() -> Summary:
        paths = RootPaths(root)
        cfg, state = open_online(paths)
        try:
            return await run_pass(paths, cfg, state, LocalStore(remote), PassOptions(now=now))
        finally:
            state.close()

    return anyio.run(go)


def test_recently_changed_files_are_rehashed_until_they_age(tmp_path: Path) -> None:
    root, remote = tmp_path / "root", tmp_path / "remote"
    remote.mkdir()
    assert main(["init", str(root), "--remote", str(remote), "--device-id", "a", "-q"]) == 0
    (root / "f.txt").write_text("one")

    def real() -> datetime:
        return datetime.now(UTC)

    def later() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=10)

    assert _pass(root, remote, real).hashed == 1
    assert _pass(root, remote, real).hashed == 1  # still racy: not cached, hashed again
    assert _pass(root, remote, later).hashed == 1  # aged: hashed once more and cached
    assert _pass(root, remote, later).hashed == 0  # now a cache hit
