"""Bounded concurrency over many items: `limit` worker tasks pull from one iterator, so
100,000 files cost `limit` tasks, not 100,000 (IO-free; anyio only)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

import anyio

from dropbeard.core.errors import single_error

T = TypeVar("T")


async def for_each(items: Iterable[T], fn: Callable[[T], Awaitable[None]], limit: int) -> None:
    """Await `fn(item)` for every item, at most `limit` at a time. The first exception
    cancels the rest and propagates (as anyio task groups do)."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:  # shared: each item is taken by exactly one worker
            await fn(item)

    async with anyio.create_task_group() as tg:
        for _ in range(max(1, limit)):
            tg.start_soon(worker)


@contextlib.contextmanager
def unwrapped() -> Iterator[None]:
    """Re-raise a task group's failure as the plain DropbeardError it holds (the first,
    when siblings failed too), so a caller can catch NotFound or IntegrityError for one
    item; a failure that is not a DropbeardError stays the group it is (a bug)."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = single_error(group)
        if error is None:
            raise
        raise error from None
