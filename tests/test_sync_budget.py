"""The transfer budget (dropbeard.sync.budget): requests and bytes in flight bounded, taken
whole, served in order, and given back on cancellation."""

from __future__ import annotations

import anyio
import pytest

from dropbeard.sync.budget import SMALL_REQUEST, TransferBudget

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


async def _peak(budget: TransferBudget, sizes: list[int | None]) -> int:
    """The most requests of `sizes` (bytes moved, None: unknown) in flight at once."""
    in_flight = peak = 0

    async def request(nbytes: int | None) -> None:
        nonlocal in_flight, peak
        async with budget.request(nbytes=nbytes):
            in_flight += 1
            peak = max(peak, in_flight)
            await anyio.sleep(0.01)
            in_flight -= 1

    async with anyio.create_task_group() as tg:
        for nbytes in sizes:
            tg.start_soon(request, nbytes)
    return peak


async def test_small_requests_run_four_to_a_slot_and_large_ones_one() -> None:
    assert await _peak(TransferBudget(3), [SMALL_REQUEST] * 30) == 12
    assert await _peak(TransferBudget(3), [0] * 30) == 12  # a HEAD moves nothing
    assert await _peak(TransferBudget(3), [SMALL_REQUEST + 1] * 30) == 3
    assert await _peak(TransferBudget(3), [None] * 30) == 3  # unknown: large
    assert TransferBudget(3).small_requests == 12


async def test_large_and_small_requests_share_the_slots() -> None:
    budget = TransferBudget(2)
    small_in_flight = []

    async with anyio.create_task_group() as tg, budget.request():  # one large: half

        async def small() -> None:
            async with budget.request(nbytes=100):
                small_in_flight.append(1)
                await anyio.sleep(0.05)

        for _ in range(10):
            tg.start_soon(small)
        await anyio.sleep(0.02)
        assert len(small_in_flight) == 4  # the other slot's four shares


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


async def test_large_requests_leave_a_quarter_of_the_slots_to_small_ones() -> None:
    assert await _peak(TransferBudget(16), [None] * 40) == 12
    assert await _peak(TransferBudget(16), [0] * 100) == 64  # small ones may take all
    budget = TransferBudget(16)
    small_in_flight = []
    hold = anyio.Event()

    async def large() -> None:
        async with budget.request():
            await hold.wait()

    async def small() -> None:
        async with budget.request(nbytes=100):
            small_in_flight.append(1)
            await hold.wait()

    async with anyio.create_task_group() as tg:
        for _ in range(20):  # 12 in flight, 8 waiting for a large slot
            tg.start_soon(large)
        await anyio.wait_all_tasks_blocked()
        for _ in range(30):
            tg.start_soon(small)
        await anyio.wait_all_tasks_blocked()
        assert len(small_in_flight) == 16  # the four slots kept from large requests
        hold.set()
    assert len(small_in_flight) == 30


async def test_large_transfers_leave_a_quarter_of_the_memory_to_small_ones() -> None:
    mib = 1024 * 1024
    budget = TransferBudget(16, memory=64 * mib)
    for _ in range(12):
        assert budget.try_take_memory(4 * mib) == 4 * mib
    assert budget.try_take_memory(4 * mib) is None  # 16 MiB free, kept for small files
    assert budget.try_take_memory(2 * mib) is None  # large too: more than SMALL_REQUEST
    for _ in range(16):
        assert budget.try_take_memory(mib) == mib
    assert budget.try_take_memory(1) is None  # all 64 MiB taken
    budget.give_memory(4 * mib)
    assert budget.try_take_memory(3 * mib) == 3 * mib  # a large one's back: room for one
    with anyio.fail_after(1):  # a large take of the whole budget is capped at 48 MiB
        for _ in range(11):
            budget.give_memory(4 * mib)
        budget.give_memory(3 * mib)
        for _ in range(16):
            budget.give_memory(mib)
        async with budget.holding(100 * mib):
            assert budget.try_take_memory(16 * mib) is None
            assert budget.try_take_memory(mib) == mib
        budget.give_memory(mib)
    assert budget.try_take_memory(64 * mib) == 48 * mib  # capped: it still gets its turn
    assert budget.try_take_memory(16 * mib) is None


async def test_a_request_cancelled_while_waiting_gives_back_what_it_held() -> None:
    """A large request waits for the shared slots after taking its share of the large
    ones: cancelled there, it gives that share back, and the next large request goes."""
    budget = TransferBudget(4)
    scope = anyio.CancelScope()
    release = anyio.Event()

    async def small_holder() -> None:
        async with budget.request(nbytes=0):
            await release.wait()

    async def cancelled_large() -> None:
        with scope:
            async with budget.request():
                pytest.fail("every shared slot was taken")

    async with anyio.create_task_group() as tg:
        for _ in range(budget.small_requests):  # every shared slot taken
            tg.start_soon(small_holder)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(cancelled_large)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        release.set()
    held = [budget.request() for _ in range(3)]  # three large at once: the pool is whole
    with anyio.fail_after(1):
        for slot in held:
            await slot.__aenter__()
        for slot in held:
            await slot.__aexit__(None, None, None)
