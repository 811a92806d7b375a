"""RetryingStore over a real LocalStore with injected faults (FaultStore), requests counted
by CountingStore; time is a fake clock advanced by the fake sleep."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dropbeard.core.errors import (
    IntegrityError,
    ListFailed,
    NotFound,
    PreconditionFailed,
    StoreError,
    Unauthorized,
    Unavailable,
)
from dropbeard.store.base import ListPage, Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.store.retry import RetryingStore
from tests.faults import FaultStore

pytestmark = pytest.mark.anyio


@dataclass
class FakeTime:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@dataclass
class Stack:
    """retry -> counting -> faults -> local: `counted` sees every attempt."""

    local: LocalStore
    faults: FaultStore
    counted: CountingStore
    time: FakeTime

    def retrying(self, **kwargs: object) -> RetryingStore:
        options: dict[str, object] = {
            "sleep": self.time.sleep,
            "clock": self.time.clock,
            "rng": lambda: 1.0,
        }
        options.update(kwargs)
        return RetryingStore(self.counted, **options)  # type: ignore[arg-type]


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    root = tmp_path / "bucket"
    root.mkdir()
    local = LocalStore(root, page_size=10)
    faults = FaultStore(local)
    return Stack(local, faults, CountingStore(faults), FakeTime())


async def all_pages(store: Store, prefix: str = "", **kwargs: str) -> list[ListPage]:
    return [page async for page in store.list(prefix, **kwargs)]


# -- what is retried ------------------------------------------------------------------


async def test_transient_errors_are_retried_until_success(stack: Stack) -> None:
    await stack.local.put("head.json", b"{}")
    stack.faults.fail("get", Unavailable, times=2)
    assert await stack.retrying().get("head.json") == b"{}"
    assert stack.counted.counts["get"] == 3
    assert len(stack.time.sleeps) == 2


@pytest.mark.parametrize(
    "error", [NotFound, PreconditionFailed, Unauthorized, IntegrityError, ListFailed, StoreError]
)
async def test_permanent_errors_are_not_retried(stack: Stack, error: type[StoreError]) -> None:
    await stack.local.put("k", b"v")
    stack.faults.fail("get", error, times=5)
    with pytest.raises(error):
        await stack.retrying().get("k")
    assert stack.counted.counts["get"] == 1
    assert stack.time.sleeps == []


async def test_absent_key_is_not_found_at_once(stack: Stack) -> None:
    with pytest.raises(NotFound):
        await stack.retrying().head("absent")
    assert stack.counted.counts["head"] == 1


async def test_gives_up_after_the_attempts(stack: Stack) -> None:
    stack.faults.fail("put", Unavailable, times=10)
    with pytest.raises(Unavailable, match="gave up after 3 attempts") as caught:
        await stack.retrying(attempts=3).put("blobs/x", b"x")
    assert caught.value.key == "blobs/x"
    assert stack.counted.counts["put"] == 3
    assert len(stack.time.sleeps) == 2
    with pytest.raises(NotFound):
        await stack.local.head("blobs/x")


async def test_backoff_grows_exponentially_up_to_the_cap(stack: Stack) -> None:
    stack.faults.fail("head", Unavailable, times=6)
    await stack.local.put("k", b"v")
    store = stack.retrying(attempts=7, base_delay=0.5, max_delay=3.0, deadline=1000)
    assert (await store.head("k")).size == 1
    assert stack.time.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


async def test_backoff_is_jittered(stack: Stack) -> None:
    draws = iter([0.5, 0.1, 0.9])
    stack.faults.fail("head", Unavailable, times=3)
    await stack.local.put("k", b"v")
    store = stack.retrying(attempts=4, base_delay=1.0, max_delay=10.0, rng=lambda: next(draws))
    await store.head("k")
    assert stack.time.sleeps == pytest.approx([0.5 * 1, 0.1 * 2, 0.9 * 4])


async def test_deadline_bounds_the_retrying(stack: Stack) -> None:
    stack.faults.fail("get", Unavailable, times=100)
    store = stack.retrying(attempts=100, base_delay=1.0, max_delay=8.0, deadline=10.0)
    with pytest.raises(Unavailable, match=r"gave up after 4 attempts.*10s deadline"):
        await store.get("k")
    # slept 1 + 2 + 4; one more sleep of 8 would end past the deadline
    assert stack.time.sleeps == [1.0, 2.0, 4.0]
    assert stack.time.now <= 10.0


async def test_each_request_gets_a_fresh_budget(stack: Stack) -> None:
    await stack.local.put("k", b"v")
    store = stack.retrying(attempts=3)
    for _ in range(3):
        stack.faults.fail("get", Unavailable, times=2)
        assert await store.get("k") == b"v"
    assert stack.counted.counts["get"] == 9


# -- lost replies ---------------------------------------------------------------------


async def test_lost_reply_on_put_if_absent_is_a_success(stack: Stack) -> None:
    stack.faults.lose_reply("put_if_absent")
    etag = await stack.retrying().put_if_absent("registry.json", b"mine")
    assert etag == (await stack.local.head("registry.json")).etag
    assert await stack.local.get("registry.json") == b"mine"
    assert stack.counted.counts["put_if_absent"] == 2


async def test_put_if_absent_retry_finding_other_bytes_fails(stack: Stack) -> None:
    await stack.local.put("registry.json", b"theirs")
    stack.faults.fail("put_if_absent", Unavailable)
    with pytest.raises(PreconditionFailed):
        await stack.retrying().put_if_absent("registry.json", b"mine")
    assert await stack.local.get("registry.json") == b"theirs"


async def test_put_if_absent_losing_at_once_does_not_read_back(stack: Stack) -> None:
    await stack.local.put("blob", b"same")
    with pytest.raises(PreconditionFailed):
        await stack.retrying().put_if_absent("blob", b"same")
    assert stack.counted.counts["get_if_changed"] == 0


async def test_lost_reply_on_put_if_match_is_a_success(stack: Stack) -> None:
    etag = await stack.local.put("registry.json", b"v1")
    stack.faults.lose_reply("put_if_match")
    new_etag = await stack.retrying().put_if_match("registry.json", b"v2", etag)
    assert new_etag == (await stack.local.head("registry.json")).etag != etag
    assert await stack.local.get("registry.json") == b"v2"


async def test_lost_reply_on_delete_is_harmless(stack: Stack) -> None:
    await stack.local.put("k", b"v")
    stack.faults.lose_reply("delete")
    await stack.retrying().delete("k")
    with pytest.raises(NotFound):
        await stack.local.head("k")


# -- transfers and listings -----------------------------------------------------------


async def test_retried_download_reports_progress_once(stack: Stack, tmp_path: Path) -> None:
    await stack.local.put("blob", b"x" * 5000)
    stack.faults.lose_reply("put_file")  # so the upload runs twice for real
    src = tmp_path / "src"
    src.write_bytes(b"y" * 3000)
    sent: list[int] = []
    await stack.retrying().put_file("up", src, progress=sent.append)
    assert sum(sent) == 3000
    assert stack.counted.counts["put_file"] == 2
    stack.faults.fail("get_file", Unavailable)
    received: list[int] = []
    await stack.retrying().get_file("blob", tmp_path / "out", progress=received.append)
    assert sum(received) == 5000
    assert (tmp_path / "out").read_bytes() == b"x" * 5000


async def test_listing_resumes_after_a_failed_page(stack: Stack) -> None:
    keys = [f"m/{i:03d}" for i in range(35)]
    for key in keys:
        await stack.local.put(key, b".")
    stack.faults.fail("list_page", Unavailable, skip=1)  # the fetch of page 2 fails,
    stack.faults.fail("list_page", Unavailable, skip=2)  # and so does the first resumed one
    pages = await all_pages(stack.retrying(), "m/")
    assert [o.key for page in pages for o in page.objects] == keys
    assert stack.faults.fired["list_page"] == 2


async def test_listing_with_delimiter_resumes_without_duplicates(stack: Stack) -> None:
    keys = [f"d/{i:02d}/x" for i in range(25)] + [f"d/{i:02d}" for i in range(25, 30)]
    for key in keys:
        await stack.local.put(key, b".")
    stack.faults.fail("list_page", Unavailable, skip=1, times=2)
    pages = await all_pages(stack.retrying(), "d/", delimiter="/")
    assert [p for page in pages for p in page.prefixes] == [f"d/{i:02d}/" for i in range(25)]
    assert [o.key for page in pages for o in page.objects] == keys[25:]


async def test_each_page_of_a_listing_gets_a_fresh_budget(stack: Stack) -> None:
    keys = [f"k{i:03d}" for i in range(40)]
    for key in keys:
        await stack.local.put(key, b".")
    for fetch in (1, 3, 5, 7):  # every other fetch fails: once per page
        stack.faults.fail("list_page", Unavailable, skip=fetch)
    pages = await all_pages(stack.retrying(attempts=2))
    assert [o.key for page in pages for o in page.objects] == keys
    assert stack.faults.fired["list_page"] == 4


async def test_listing_gives_up_like_any_request(stack: Stack) -> None:
    await stack.local.put("k", b"v")
    stack.faults.fail("list_page", Unavailable, times=10)
    with pytest.raises(Unavailable, match="gave up after 2 attempts"):
        await all_pages(stack.retrying(attempts=2))


# -- counting -------------------------------------------------------------------------


async def test_counting_store_counts_requests_and_writes(stack: Stack) -> None:
    counted = stack.counted
    await counted.put("a", b"1")
    await counted.put_if_absent("b", b"2")
    await counted.get("a")
    await counted.head("b")
    await counted.delete("a")
    assert [p async for p in counted.list("")] != []
    assert counted.writes == 3
    assert counted.counts["list_page"] == 1
    counted.reset()
    for _ in range(3):  # an idle pass: reads only
        await counted.get_if_changed("b", (await stack.local.head("b")).etag)
    assert counted.writes == 0
    assert counted.counts == {"get_if_changed": 3}


def test_wrappers_are_stores(stack: Stack) -> None:
    for store in (stack.local, stack.faults, stack.counted, stack.retrying()):
        assert isinstance(store, Store)
        assert store.description == str(stack.local.root)


def test_fault_programs_are_consumed() -> None:
    faults = FaultStore(LocalStore(Path("/nonexistent")))
    faults.fail("get", times=2)
    faults.lose_reply("put")
    assert faults.pending == 3
    with pytest.raises(ValueError):
        faults.lose_reply("get")
    faults.clear()
    assert faults.pending == 0
