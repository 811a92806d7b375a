"""Blocking jobs carried to worker threads in shared trips: whatever jobs are queued when a
trip leaves go together, so many small jobs (a stat, a file written and renamed) cost a
few trips between threads instead of one each (IO: runs the jobs in worker threads).

Each trip wakes a thread and hands the GIL back and forth; for a small downloaded file
that costs more than the file work itself, and on a busy machine far more. Jobs queue
while a trip is under way and leave on the next one, so a trip carries as many jobs as
arrived during the last one: one job when the folder is quiet, dozens when a thousand
downloads land at once.

One trip is under way at a time until one has taken SLOW_TRIP: a second worker thread
making system calls beside the first puts three threads (with the event loop's) on the
GIL at every call, which on a fast disk costs more than it saves (5,000 small files
downloaded on loopback: a sixth of the system time, ~5 % of all CPU). On a slow disk or
a network file system a trip takes longer, and the next ones leave beside it, up to
`trips`, until none is under way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

T = TypeVar("T")

#: Seconds a trip is under way before the next may leave beside it.
SLOW_TRIP = 0.02


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "taken", "value", "wake")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.taken = False  # on a trip under way
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None
        #: what its caller waits on, if it waits: a bare future of the running loop, made
        #: and set thousands of times a second (an anyio Event costs several times more)
        self.wake: asyncio.Future[None] | None = None

    def run(self) -> None:
        try:
            self.value = self.fn()
        except Exception as exc:  # handed to the job's caller, on its own task
            self.error = exc
        self.done = True

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class ThreadTrips:
    """Runs `fn()` calls in worker threads, at most `trips` trips at a time and `jobs`
    jobs per trip; `run` returns each call's result (or raises its exception) to its own
    caller, as `anyio.to_thread.run_sync` would.

    A caller whose job cannot leave yet waits on its own event: a trip's end wakes the
    callers of the jobs it carried, and the caller of the first job still queued, who
    drives the next trip (waking every waiter at each trip's end would cost a task switch
    per waiter per trip, the more the slower the network). So does a trip's reaching
    `slow` seconds under way, from when more than one trip may be under way at once
    (see the module docstring), until none is."""

    def __init__(
        self,
        *,
        trips: int = 2,
        jobs: int = 64,
        on_trip: Callable[[], None] | None = None,
        slow: float = SLOW_TRIP,
    ) -> None:
        if trips < 1 or jobs < 1:
            raise ValueError("ThreadTrips needs at least one trip of one job")
        self._trips = trips
        self._jobs = jobs
        self._slow_after = slow
        #: a trip took `slow` seconds, and trips have been under way ever since
        self._slow = False
        self._timer: asyncio.TimerHandle | None = None
        #: called in the worker thread as each trip begins, before its jobs
        self._on_trip = on_trip
        self._queue: list[_Job[Any]] = []
        self._under_way = 0
        #: trips made, and callers woken, so far (for tests and benchmarks)
        self.made = 0
        self.woken = 0

    async def run(self, fn: Callable[[], T]) -> T:
        job = _Job(fn)
        self._queue.append(job)
        try:
            while not job.done:
                if not job.taken and self._may_leave():
                    await self._trip()
                else:
                    job.wake = asyncio.get_running_loop().create_future()
                    await job.wake
                    self.woken += 1
        except BaseException:
            self._abandon(job)
            raise
        return job.result()

    def _abandon(self, job: _Job[Any]) -> None:
        """A caller cancelled (or failed) before its job left: the job never runs, and if
        that caller was to drive the next trip, the next queued job's caller does."""
        job.wake = None
        if not job.taken and any(queued is job for queued in self._queue):
            self._queue = [queued for queued in self._queue if queued is not job]
        if self._queue and self._may_leave():
            _wake(self._queue[0])

    def _may_leave(self) -> bool:
        """Whether a trip may leave now: none under way, or one has been slow."""
        return self._under_way < (self._trips if self._slow else 1)

    def _slow_trip(self) -> None:
        """A trip is still under way after `slow` seconds: the next may leave beside it."""
        self._timer = None
        self._slow = True
        if self._queue:
            _wake(self._queue[0])

    async def _trip(self) -> None:
        """Carry the first queued jobs to a worker thread and back."""
        batch, self._queue = self._queue[: self._jobs], self._queue[self._jobs :]
        for queued in batch:
            queued.taken = True
        self._under_way += 1
        self.made += 1
        if self._timer is None and not self._slow and self._trips > 1:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._slow_after, self._slow_trip)
        try:
            await anyio.to_thread.run_sync(_run_all, batch, self._on_trip)
        finally:  # a trip that never left (cancelled on the way) leaves its jobs queued
            unrun = [queued for queued in batch if not queued.done]
            for queued in unrun:
                queued.taken = False
            self._queue[:0] = unrun
            self._under_way -= 1
            if not self._under_way:
                self._slow = False
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            for carried in batch:
                _wake(carried)
            if self._queue:
                _wake(self._queue[0])


def _wake(job: _Job[Any]) -> None:
    if job.wake is not None:
        if not job.wake.done():  # done: its caller was cancelled while it waited
            job.wake.set_result(None)
        job.wake = None


def _run_all(jobs: list[_Job[Any]], on_trip: Callable[[], None] | None) -> None:
    if on_trip is not None:
        on_trip()
    for job in jobs:
        job.run()


def run_in_order(steps: list[Callable[[], None]]) -> None:
    """Each of `steps`, in order (one worker-thread trip for a batch of them)."""
    for step in steps:
        step()
