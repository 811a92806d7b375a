"""Blocking jobs sharing worker-thread trips (dropbeard.sync.trips): each caller gets its
own result or exception, and jobs queued while a trip is under way leave together."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from dropbeard.sync import trips as module
from dropbeard.sync.trips import ThreadTrips

pytestmark = pytest.mark.anyio


async def test_each_caller_gets_its_own_result_or_exception() -> None:
    trips = ThreadTrips()
    results: dict[int, object] = {}

    def job(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(f"job {i}")
        return i * i

    async def call(i: int) -> None:
        try:
            results[i] = await trips.run(lambda: job(i))
        except ValueError as exc:
            results[i] = str(exc)

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(call, i)
    assert results == {i: f"job {i}" if i % 3 == 0 else i * i for i in range(30)}


async def test_jobs_run_in_worker_threads_never_on_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    trips = ThreadTrips()
    assert await trips.run(threading.get_ident) != loop_thread


async def test_jobs_queued_during_a_trip_leave_together() -> None:
    trips = ThreadTrips(trips=1, jobs=100)

    def slow() -> None:
        time.sleep(0.05)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(trips.run, slow)
    # the first job leaves alone; the 49 queued behind it share the next trip
    assert trips.made == 2


class _Overlap:
    """Jobs that record how many trips' jobs run at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def job(self, seconds: float) -> Any:
        def run() -> None:
            with self._lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(seconds)
            with self._lock:
                self.now -= 1

        return run


async def test_quick_trips_leave_one_at_a_time() -> None:
    # trips of a few ms each (a fast disk): never two worker threads on the GIL at once
    trips, seen = ThreadTrips(trips=2, jobs=4, slow=0.5), _Overlap()
    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(trips.run, seen.job(0.002))
    assert seen.most == 1
    assert trips.made >= 10


async def test_a_slow_trip_lets_the_next_leave_beside_it_until_none_is_under_way() -> None:
    trips, seen = ThreadTrips(trips=2, jobs=1, slow=0.2), _Overlap()
    finished: list[str] = []

    async def run(name: str, seconds: float) -> None:
        await trips.run(seen.job(seconds))
        finished.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "slow", 1.0)
        await anyio.sleep(0.01)
        for i in range(3):
            tg.start_soon(run, f"quick{i}", 0.001)
    # the quick jobs left beside the slow one once it took 200 ms, and were done long
    # before it
    assert seen.most == 2
    assert finished[-1] == "slow"
    # nothing under way any more: one at a time again
    seen.most = 0
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(trips.run, seen.job(0.002))
    assert seen.most == 1


async def test_a_trip_carries_at_most_its_jobs() -> None:
    trips = ThreadTrips(trips=1, jobs=10)

    async with anyio.create_task_group() as tg:
        for _ in range(41):
            tg.start_soon(trips.run, lambda: None)
    assert trips.made == 1 + 4  # one alone, then the 40 queued behind it in trips of 10


@pytest.mark.parametrize("bad", [{"trips": 0}, {"jobs": 0}])
def test_a_trip_needs_room(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ThreadTrips(**bad)


async def test_no_trip_leaves_empty_while_another_carries_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes: list[int] = []
    run_all = module._run_all

    def counted(jobs: list[object], on_trip: object) -> None:
        sizes.append(len(jobs))
        run_all(jobs, on_trip)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "_run_all", counted)
    trips = ThreadTrips(trips=2, jobs=8)

    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(trips.run, lambda: time.sleep(0.01))
    assert sum(sizes) == 40
    assert min(sizes) >= 1


async def test_a_trip_that_never_leaves_leaves_its_jobs_to_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver cancelled before its trip ran (say, waiting for a free thread) must not
    strand the other callers' jobs it took: they still get their results."""
    run_sync = module.anyio.to_thread.run_sync
    calls: list[int] = []

    async def second_trip_fails(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("no thread today")
        return await run_sync(fn, *args, **kwargs)

    monkeypatch.setattr(module.anyio.to_thread, "run_sync", second_trip_fails)
    trips = ThreadTrips(trips=1)
    results: dict[int, object] = {}

    async def call(i: int) -> None:
        try:
            results[i] = await trips.run(lambda: time.sleep(0.05) if i == 0 else i)
        except RuntimeError as exc:
            results[i] = str(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(call, i)
    # job 0 leaves alone; 1-4 queue behind it and one of them drives the trip that fails
    failed = [i for i, r in results.items() if r == "no thread today"]
    assert len(failed) == 1
    assert results == {0: None} | {i: i for i in range(1, 5) if i not in failed} | {
        failed[0]: "no thread today"
    }


async def test_a_trip_wakes_only_its_own_callers_and_the_next_driver() -> None:
    """50 callers, one job a trip: each trip's end wakes its caller and the one who drives
    next, not all 49 still waiting (a task switch per waiter per trip)."""
    trips = ThreadTrips(trips=1, jobs=1)
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(trips.run, lambda: time.sleep(0.001))
    assert trips.made == 50
    assert trips.woken <= 2 * 50


async def test_a_caller_cancelled_while_it_waits_strands_nobody_and_its_job_never_runs() -> None:
    """Caller 1 is to drive the trip after job 0's; cancelled before that, its job stays
    behind and the callers after it still get their results."""
    trips = ThreadTrips(trips=1, jobs=1)
    ran: list[int] = []
    results: dict[int, int] = {}
    scope = anyio.CancelScope()
    release = threading.Event()

    def job(i: int) -> int:
        if i == 0:
            release.wait(5)
        ran.append(i)
        return i

    async def call(i: int) -> None:
        results[i] = await trips.run(lambda: job(i))

    async def cancelled_caller() -> None:
        with scope:
            await call(1)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 0)
            await anyio.sleep(0.05)  # job 0 is on its trip
            tg.start_soon(cancelled_caller)
            await anyio.sleep(0.01)
            for i in range(2, 5):
                tg.start_soon(call, i)
            await anyio.sleep(0.01)
            scope.cancel()
            await anyio.sleep(0.01)
            release.set()
    assert results == {0: 0, 2: 2, 3: 3, 4: 4}
    assert sorted(ran) == [0, 2, 3, 4]


async def test_each_trip_begins_with_its_hook_in_the_worker_thread() -> None:
    seen: list[tuple[str, int | str]] = []
    loop_thread = threading.get_ident()

    def begins() -> None:
        assert threading.get_ident() != loop_thread
        seen.append(("trip", "begins"))

    trips = ThreadTrips(trips=1, jobs=4, on_trip=begins)

    async def call(i: int) -> None:
        await trips.run(lambda: seen.append(("job", i)))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(call, i)
    assert sum(1 for kind, _ in seen if kind == "trip") == trips.made
    assert seen[0] == ("trip", "begins")
    jobs = [i for kind, i in seen if kind == "job"]
    assert sorted(jobs) == list(range(10))  # type: ignore[type-var]
