"""Building a root's store (`dropbeard.store.factory`): an S3 store is built, and its
modules imported, only on its first request (`DeferredStore`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from dropbeard.store.base import Store
from dropbeard.store.factory import DeferredStore
from dropbeard.store.local import LocalStore

pytestmark = pytest.mark.anyio

OPENED_NEVER_ASKED = """
import sys, anyio
from dropbeard.core.config import RemoteConfig
from dropbeard.store.factory import open_store
store = open_store(RemoteConfig(url="s3://bucket/some/prefix", endpoint_url="http://127.0.0.1:9"))
print(store.description)
anyio.run(store.aclose)
print(sorted(m for m in ("aiobotocore", "botocore", "aiohttp") if m in sys.modules))
"""


def test_an_s3_store_never_asked_imports_no_s3_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", OPENED_NEVER_ASKED], capture_output=True, text=True, check=True
    )
    description, imported = done.stdout.splitlines()
    assert description == "s3://bucket/some/prefix at http://127.0.0.1:9"
    assert imported == "[]"


class Built:
    """Counts the stores `build` made."""

    def __init__(self, root: Path) -> None:
        root.mkdir(exist_ok=True)
        self.root, self.count = root, 0

    def __call__(self) -> Store:
        self.count += 1
        return LocalStore(self.root)


async def test_the_store_is_built_once_by_its_first_requests(tmp_path: Path) -> None:
    build = Built(tmp_path / "remote")
    store = DeferredStore(build, "somewhere", ("json",))
    assert build.count == 0

    async def put(i: int) -> None:
        await store.put(f"k{i}", b"x")

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(put, i)
    pages = [page async for page in store.list("")]
    assert sorted(o.key for p in pages for o in p.objects) == [f"k{i}" for i in range(5)]
    assert build.count == 1
    await store.aclose()


async def test_once_built_a_request_takes_no_lock(tmp_path: Path) -> None:
    """Each anyio lock taken costs a trip through the event loop: one per request of a
    pass of thousands, for nothing once the store is there."""
    store = DeferredStore(Built(tmp_path / "remote"), "somewhere")
    await store.put("first", b"x")

    class NoLock:
        async def __aenter__(self) -> None:
            raise AssertionError("the lock was taken")

        async def __aexit__(self, *_: object) -> None:
            return None

    store._lock = NoLock()  # type: ignore[assignment]
    await store.put("then", b"y")
    assert await store.get("then") == b"y"


async def test_a_listing_is_the_first_request_too(tmp_path: Path) -> None:
    build = Built(tmp_path / "remote")
    await LocalStore(tmp_path / "remote").put("a", b"1")
    store = DeferredStore(build, "somewhere")
    assert [o.key async for p in store.list("") for o in p.objects] == ["a"]
    assert build.count == 1


async def test_closing_a_store_never_asked_builds_nothing(tmp_path: Path) -> None:
    build = Built(tmp_path / "remote")
    store = DeferredStore(build, "somewhere")
    await store.aclose()
    assert build.count == 0
    with pytest.raises(RuntimeError, match="somewhere"):
        _ = store.inner
