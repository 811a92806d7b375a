"""Items handed from a producer to consumer tasks (dropbeard.sync.handoff): each item
reaches one consumer, in order, an item that is there is taken without yielding to the
event loop, closing releases every consumer, and a consumer cancelled holding a handed
item gives it back."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from dropbeard.sync.handoff import Handoff

pytestmark = pytest.mark.anyio


async def test_every_item_reaches_one_consumer_in_order() -> None:
    handoff: Handoff[int] = Handoff()
    got: dict[int, list[int]] = {c: [] for c in range(4)}

    async def consume(c: int) -> None:
        while (item := await handoff.get()) is not None:
            got[c].append(item)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for c in range(4):
            tg.start_soon(consume, c)
        await anyio.wait_all_tasks_blocked()
        for i in range(100):
            handoff.put(i)
            if i % 7 == 0:
                await anyio.lowlevel.checkpoint()
        handoff.close()
    assert sorted(i for items in got.values() for i in items) == list(range(100))
    assert all(items == sorted(items) for items in got.values())


def test_an_item_that_is_there_is_taken_without_yielding() -> None:
    handoff: Handoff[str] = Handoff()
    handoff.put("ready")
    coro = handoff.get()
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # completes on its first step: no suspension, no loop iteration
    assert done.value.value == "ready"


async def test_closing_releases_every_waiting_consumer_and_refuses_more() -> None:
    handoff: Handoff[int] = Handoff()
    ended: list[int | None] = []

    async def consume() -> None:
        ended.append(await handoff.get())

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            handoff.close()
    assert ended == [None, None, None]
    with pytest.raises(RuntimeError):
        handoff.put(1)


async def test_a_consumer_cancelled_with_a_handed_item_gives_it_back() -> None:
    handoff: Handoff[str] = Handoff()
    scope = anyio.CancelScope()

    async def cancelled() -> None:
        with scope:
            await handoff.get()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancelled)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()  # the waiter is cancelled, but has not run since...
        handoff.put("precious")  # ...so the item is handed to it all the same
    with anyio.fail_after(1):
        assert await handoff.get() == "precious"


async def test_a_consumer_cancelled_while_waiting_gets_nothing_later() -> None:
    handoff: Handoff[str] = Handoff()
    scope = anyio.CancelScope()

    async def cancelled() -> None:
        with scope:
            await handoff.get()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancelled)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
    handoff.put("later")
    with anyio.fail_after(1):
        assert await handoff.get() == "later"
