"""Bounded concurrency helpers (dropbeard.sync.workers): a task group's failure comes out
as the plain error a caller can catch, and no more tasks start than can ever run."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from dropbeard.core.errors import IntegrityError, NotFound
from dropbeard.sync.workers import for_each, unwrapped

pytestmark = pytest.mark.anyio


async def test_a_failed_item_comes_out_as_its_own_error() -> None:
    async def fail_on_two(i: int) -> None:
        if i == 2:
            raise NotFound("item 2 is missing", "k2")

    with pytest.raises(NotFound, match="item 2 is missing"), unwrapped():
        await for_each(range(5), fail_on_two, 3)


async def test_of_several_failures_one_comes_out() -> None:
    async def fail(i: int) -> None:
        await anyio.lowlevel.checkpoint()
        raise IntegrityError(f"item {i}")

    with pytest.raises(IntegrityError, match="item"), unwrapped():
        await for_each(range(4), fail, 4)


async def test_a_failure_that_is_not_a_dropbeard_error_stays_a_group() -> None:
    async def bug(i: int) -> None:
        raise KeyError(i)

    with pytest.raises(BaseExceptionGroup), unwrapped():
        await for_each(range(3), bug, 2)
