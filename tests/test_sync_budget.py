"""The transfer budget (dropbeard.sync.budget): requests and bytes in flight bounded, taken
whole, served in order, and given back on cancellation."""

from __future__ import annotations

import anyio
import pytest

from dropbeard.sync.budget import TransferBudget

pytestmark = pytest.mark.anyio


async def test_no_more_requests_than_the_budget_are_in_flight() -> None:
    budget = TransferBudget(3)
    in_flight = peak = 0

    async def request() -> None:
        nonlocal in_flight, peak
        async with budget.request():
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.sleep(0.01)
            in_flight -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(request)
    assert peak == 3


async def test_several_slots_are_taken_at_once_so_two_large_transfers_cannot_deadlock() -> None:
    budget = TransferBudget(3)
    done: list[str] = []

    async def large(name: str) -> None:
        async with budget.request(2):
            await anyio.sleep(0.01)
            done.append(name)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(large, "a")
            tg.start_soon(large, "b")
    assert sorted(done) == ["a", "b"]


async def test_memory_is_bounded_and_a_large_waiter_is_not_overtaken() -> None:
    budget = TransferBudget(8, memory=10)
    order: list[str] = []
    release_first = anyio.Event()

    async def hold(name: str, nbytes: int, until: anyio.Event | None = None) -> None:
        async with budget.holding(nbytes):
            order.append(name)
            if until is not None:
                await until.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "first 6", 6, release_first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(hold, "large 8", 8)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(hold, "small 2", 2)  # 4 bytes are free, but it queues behind
        await anyio.wait_all_tasks_blocked()
        assert order == ["first 6"]
        release_first.set()
    assert order == ["first 6", "large 8", "small 2"]


async def test_more_than_the_whole_budget_still_gets_its_turn() -> None:
    budget = TransferBudget(1, memory=10)
    with anyio.fail_after(1):
        async with budget.holding(1_000):
            pass
        async with budget.holding(10):
            pass


async def test_a_cancelled_waiter_lets_those_behind_it_in() -> None:
    budget = TransferBudget(1, memory=10)
    got: list[str] = []
    scope = anyio.CancelScope()

    async def hold(nbytes: int) -> None:
        async with budget.holding(nbytes):
            got.append(f"{nbytes}")

    async def cancelled_while_waiting() -> None:
        with scope:
            await hold(8)

    async with anyio.create_task_group() as tg, budget.holding(5):
        tg.start_soon(cancelled_while_waiting)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(hold, 5)
        await anyio.wait_all_tasks_blocked()
        assert got == []  # 5 would fit, but it queued behind the 8
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert got == ["5"]
    with anyio.fail_after(1):  # everything was given back
        async with budget.holding(10):
            pass


async def test_memory_is_taken_without_waiting_only_when_free_and_nobody_waits() -> None:
    budget = TransferBudget(4, memory=100)
    assert budget.try_take_memory(60) == 60
    assert budget.try_take_memory(50) is None  # only 40 free
    waiter_got: list[int] = []

    async def waiter() -> None:
        waiter_got.append(await budget.take_memory(80))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        assert budget.try_take_memory(10) is None  # free, but the waiter is first
        budget.give_memory(60)
    assert waiter_got == [80]
    assert budget.try_take_memory(500) is None  # capped at the budget's 100; 20 are free
    assert budget.try_take_memory(20) == 20
