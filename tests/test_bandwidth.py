"""Bandwidth limits: parsed as rclone users write them (dropbeard.core.bandwidth), and held
by every transfer that shares one `Bandwidth` (dropbeard.store.bandwidth), on a fake clock
and on a real store."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from dropbeard.core.bandwidth import format_bandwidth, parse_bandwidth
from dropbeard.store.bandwidth import Bandwidth
from dropbeard.store.local import LocalStore

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10M", 10 * MiB),
        ("10m", 10 * MiB),
        ("512K", 512 * KiB),
        ("512", 512 * KiB),  # a bare number is KiB/s, as in rclone
        (512, 512 * KiB),
        ("1.5M", int(1.5 * MiB)),
        ("1G", GiB),
        ("10MiB/s", 10 * MiB),
        ("10M/s", 10 * MiB),
        ("2048B", 2048),
        (" 1M ", MiB),
        ("off", None),
        ("OFF", None),
        ("0", None),
        (0, None),
    ],
)
def test_parse_bandwidth(text: str | int, rate: int | None) -> None:
    assert parse_bandwidth(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "-1M", "10X", "1M2", "nan", "10B", True, None])
def test_unparsable_or_tiny_limits_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="invalid bandwidth limit"):
        parse_bandwidth(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [None, 2048, 512 * KiB, int(1.5 * MiB), 10 * MiB, 3 * GiB])
def test_formatted_limits_parse_back(rate: int | None) -> None:
    assert parse_bandwidth(format_bandwidth(rate)) == rate


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.anyio
async def test_spending_waits_for_the_link_like_a_line_of_that_speed() -> None:
    fake = FakeTime()
    link = Bandwidth(1000, clock=fake.clock, sleep=fake.sleep)
    await link.spend(500)  # the link is free: goes at once, busy for 0.5 s
    assert fake.slept == []
    await link.spend(1000)  # waits its turn: 0.5 s
    await link.spend(1000)  # then 1 s after that
    assert fake.slept == [0.5, 1.0]
    fake.now += 10  # idle time is not saved up for a burst
    await link.spend(2000)
    await link.spend(1)
    assert fake.slept == [0.5, 1.0, 2.0]


@pytest.mark.anyio
async def test_no_limit_never_waits_and_a_reload_changes_the_rate() -> None:
    fake = FakeTime()
    link = Bandwidth(None, clock=fake.clock, sleep=fake.sleep)
    await link.spend(10 * GiB)
    assert fake.slept == []
    link.set_rate(100)
    await link.spend(100)
    await link.spend(100)
    assert fake.slept == [1.0]
    with pytest.raises(ValueError):
        link.set_rate(0)


@pytest.mark.anyio
async def test_stores_sharing_one_limit_stay_within_it_together(tmp_path: Path) -> None:
    rate = 4 * MiB
    link = Bandwidth(rate)
    stores = [LocalStore(tmp_path, bandwidth=link), LocalStore(tmp_path, bandwidth=link)]
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * (2 * MiB))
    total = 0
    began = time.monotonic()

    async def transfer(i: int, store: LocalStore) -> None:
        nonlocal total
        await store.put_file(f"o/{i}", src)  # 2 MiB, counted chunk by chunk
        await store.put(f"s/{i}", b"y" * MiB)
        await store.get_file(f"o/{i}", tmp_path / f"back{i}")
        total += 5 * MiB

    async with anyio.create_task_group() as tg:
        for i, store in enumerate(stores):
            tg.start_soon(transfer, i, store)
    elapsed = time.monotonic() - began
    # 10 MiB at 4 MiB/s: the first MiB goes at once, the rest takes >= 9/4 s.
    assert total == 10 * MiB
    assert elapsed >= (total - MiB) / rate - 0.05
    assert elapsed < 10  # and it does flow
