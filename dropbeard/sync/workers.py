"""Bounded concurrency over many items: `limit` worker tasks pull from one iterator, so
100,000 files cost `limit` tasks, not 100,000 (IO-free; anyio only)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import anyio

from dropbeard.core.errors import single_error
from dropbeard.sync.handoff import Handoff

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


async def for_each_prepared(
    batches: Iterable[list[T]],
    prepare: Callable[[list[T]], Awaitable[list[T]]],
    fn: Callable[[T], Awaitable[None]],
    limit: int,
) -> None:
    """`for_each` over what `prepare` keeps of each batch, the batches prepared one after
    another while `limit` workers already take the items of those prepared before."""
    ready: Handoff[T] = Handoff()

    async def prepare_all() -> None:
        try:
            for batch in batches:
                for item in await prepare(batch):
                    ready.put(item)
        finally:
            ready.close()

    async def worker() -> None:
        while (item := await ready.get()) is not None:
            await fn(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(prepare_all)
        for _ in range(max(1, limit)):
            tg.start_soon(worker)


def in_batches(items: Sequence[T], first: int, size: int) -> Iterator[list[T]]:
    """`items` in batches: the first of `first` items, the others of `size`."""
    if items:
        yield list(items[:first])
    for i in range(first, len(items), size):
        yield list(items[i : i + size])


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


@contextlib.contextmanager
def first_error() -> Iterator[None]:
    """Raise the first error of a failed task group as itself, so that callers can catch
    FormatError or NotFound: anyio wraps them, with the cancellations they caused."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves: list[BaseException] = []
        pending: list[BaseException] = [group]
        while pending:
            exc = pending.pop(0)
            if isinstance(exc, BaseExceptionGroup):
                pending[:0] = exc.exceptions
            else:
                leaves.append(exc)
        if leaves and all(isinstance(e, Exception) for e in leaves):
            raise leaves[0] from None
        raise
