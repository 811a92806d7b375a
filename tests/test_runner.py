"""When one root's runner asks for a pass, and over what (dropbeard.daemon.runner): a head
that moved elsewhere asks for a pass over what changed there, not a rescan of the root;
a full rescan asked for meanwhile stays one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from dropbeard.core.daemonconfig import RootSettings
from dropbeard.core.summary import Summary
from dropbeard.daemon.runner import Request, RootRunner
from dropbeard.store.local import LocalStore

pytestmark = pytest.mark.anyio


class QuietLog:
    """A structlog-like logger that drops everything."""

    def bind(self, **_fields: Any) -> QuietLog:
        return self

    def __getattr__(self, _name: str) -> Any:
        return lambda *_args, **_fields: None


def runner(tmp_path: Path, moved: list[str], reported: anyio.Event | None = None) -> RootRunner:
    """A runner whose head check reports `moved` once (then sets `reported`), polled
    every 10 ms."""
    settings = RootSettings(
        path=str(tmp_path), poll_interval=0.01, interval=3600, debounce=1, max_delay=10,
        concurrency=1,
    )  # fmt: skip
    made = RootRunner(settings, store_factory=lambda *_: LocalStore(tmp_path), log=QuietLog())
    sync = made._sync  # the bucket side: its store is open, its heads moved once
    sync._store = LocalStore(tmp_path)

    async def heads_changed() -> list[str]:
        found, moved[:] = list(moved), []
        if found and reported is not None:
            reported.set()
        return found

    sync.heads_changed = heads_changed  # type: ignore[method-assign]
    return made


async def poll_briefly(made: RootRunner, reported: anyio.Event) -> None:
    """Run the poll loop until its head check reported the moved heads (however loaded
    the machine: a fixed 0.2 s once saw no poll at all), and a little longer."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(made._poll_loop)
            await reported.wait()
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


async def test_a_moved_head_asks_for_a_pass_over_what_changed(tmp_path: Path) -> None:
    reported = anyio.Event()
    made = runner(tmp_path, ["b"], reported)
    await poll_briefly(made, reported)
    pending = made.snapshot()
    assert pending["next_pass_reason"] == "remote:b"
    assert pending["pending_full"] is False and pending["pending_count"] == 0


async def test_a_full_rescan_asked_for_stays_one(tmp_path: Path) -> None:
    reported = anyio.Event()
    made = runner(tmp_path, ["b"], reported)
    made.request("interval")
    await poll_briefly(made, reported)
    pending = made.snapshot()
    assert pending["next_pass_reason"] == "interval,remote:b"
    assert pending["pending_full"] is True


async def test_gc_runs_every_gc_interval_and_never_when_zero_or_paused(tmp_path: Path) -> None:
    made = runner(tmp_path, [])
    runs: list[float] = []

    async def maintain() -> None:
        runs.append(anyio.current_time())

    made._sync.maintain = maintain  # type: ignore[method-assign]
    made.settings = msgspec.structs.replace(made.settings, gc_interval=0.05)
    with anyio.move_on_after(0.3):
        await made._gc_loop()
    assert 3 <= len(runs) <= 7  # a random offset under 0.05 s, then every 0.05 s
    runs.clear()
    made.pause()
    with anyio.move_on_after(0.2):
        await made._gc_loop()
    assert runs == []
    made.resume()
    made.settings = msgspec.structs.replace(made.settings, gc_interval=0.0)
    with anyio.move_on_after(0.1):
        await made._gc_loop()
    assert runs == []


async def test_while_a_mass_delete_is_halted_every_pass_looks_at_the_whole_root(
    tmp_path: Path,
) -> None:
    """A pass over the one path the watcher saw cannot tell that the root is whole again
    (the file came back): `status` would keep saying HALTED until the hourly rescan."""
    made = runner(tmp_path, [])
    scopes: list[frozenset[str] | None] = []
    halts = ["refusing to delete: the root is empty", None, None]

    async def run(only: frozenset[str] | None, started: Any) -> Summary:
        scopes.append(only)
        started()
        return Summary(root=str(tmp_path), root_id="r", device_id="d", mode="m",
                       halted=halts[len(scopes) - 1])  # fmt: skip

    made._sync.run = run  # type: ignore[method-assign]
    for _ in halts:
        await made._attempt(Request(False, {"a.txt"}, ["watch"]))
    assert scopes == [frozenset({"a.txt"}), None, frozenset({"a.txt"})]
