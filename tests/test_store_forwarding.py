"""Every `Store` wrapper passes each call on faithfully: same arguments (keywords and
progress callback included), same answer. The inner store is a recorder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dropbeard.store.base import FileSlot, ListPage, ObjectInfo, Progress
from dropbeard.store.counting import CountingStore
from dropbeard.store.factory import DeferredStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.retry import RetryingStore
from dropbeard.store.silence import SilenceWatch
from dropbeard.sync.meter import PassMeter
from dropbeard.sync.metered import MeteredStore
from tests.faults import FaultStore

pytestmark = pytest.mark.anyio

INFO = ObjectInfo("blobs/k", 3, "etag-k", 1.0)
PAGES = [ListPage([INFO], ["p/"]), ListPage([], ["q/"])]


class Recorder:
    """Records each call as (method, args...) and answers with canned values; transfers
    report 1 byte and then 2 to the progress callback they are given."""

    description = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def get(self, key: str) -> bytes:
        self.calls.append(("get", key))
        return b"data"

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        self.calls.append(("get_if_changed", key, etag))
        return b"data", "etag-2"

    async def get_file(
        self,
        key: str,
        dest: Path | FileSlot,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        self.calls.append(("get_file", key, dest, expected_sha256))
        _report(progress)
        return INFO

    async def head(self, key: str) -> ObjectInfo:
        self.calls.append(("head", key))
        return INFO

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.calls.append(("put", key, data, sha256))
        return "etag-put"

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        self.calls.append(("put_file", key, path, expected_sha256))
        _report(progress)
        return "etag-file"

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.calls.append(("put_if_absent", key, data, sha256))
        return "etag-absent"

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        self.calls.append(("put_if_match", key, data, etag))
        return "etag-match"

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        self.calls.append(("list", prefix, start_after, delimiter))
        for page in PAGES:
            yield page

    async def delete(self, key: str) -> None:
        self.calls.append(("delete", key))

    async def aclose(self) -> None:
        self.calls.append(("aclose",))


def _report(progress: Progress | None) -> None:
    if progress is not None:
        progress(1)
        progress(2)


WRAPPERS: dict[str, Callable[[Recorder], ForwardingStore]] = {
    "forwarding": ForwardingStore,
    "counting": CountingStore,
    "retrying": RetryingStore,
    "faults": FaultStore,
    "metered": lambda inner: MeteredStore(inner, PassMeter()),
    "silence": SilenceWatch,
    "deferred": lambda inner: DeferredStore(lambda: inner, "recorder"),
}


@pytest.fixture(params=list(WRAPPERS))
def wrapper(request: pytest.FixtureRequest) -> ForwardingStore:
    return WRAPPERS[request.param](Recorder())


def recorded(store: ForwardingStore) -> list[tuple[Any, ...]]:
    assert isinstance(store.inner, Recorder)
    return store.inner.calls


async def test_requests_pass_their_arguments_and_answers(wrapper: ForwardingStore) -> None:
    assert wrapper.description == "recorder"
    assert await wrapper.get("a") == b"data"
    assert await wrapper.get("x/blobs/c") == b"data"
    assert await wrapper.get_if_changed("a", "etag-1") == (b"data", "etag-2")
    assert await wrapper.head("blobs/k") == INFO
    assert await wrapper.put("a", b"1", sha256="sha-1") == "etag-put"
    assert await wrapper.put_if_absent("x/blobs/b", b"2", sha256="sha-2") == "etag-absent"
    assert await wrapper.put_if_match("registry.json", b"3", "etag-0") == "etag-match"
    await wrapper.delete("a")
    await wrapper.aclose()
    assert recorded(wrapper) == [
        ("get", "a"),
        ("get", "x/blobs/c"),
        ("get_if_changed", "a", "etag-1"),
        ("head", "blobs/k"),
        ("put", "a", b"1", "sha-1"),
        ("put_if_absent", "x/blobs/b", b"2", "sha-2"),
        ("put_if_match", "registry.json", b"3", "etag-0"),
        ("delete", "a"),
        ("aclose",),
    ]


async def test_transfers_pass_keywords_and_progress(
    wrapper: ForwardingStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    sent: list[int] = []
    received: list[int] = []
    etag = await wrapper.put_file("blobs/k", src, expected_sha256="sha-up", progress=sent.append)
    info = await wrapper.get_file(
        "blobs/k", tmp_path / "dest", expected_sha256="sha-down", progress=received.append
    )
    assert (etag, info) == ("etag-file", INFO)
    assert sent == received == [1, 2]
    assert recorded(wrapper) == [
        ("put_file", "blobs/k", src, "sha-up"),
        ("get_file", "blobs/k", tmp_path / "dest", "sha-down"),
    ]


async def test_listing_passes_its_options_and_every_page(wrapper: ForwardingStore) -> None:
    pages = [page async for page in wrapper.list("p", start_after="a", delimiter="/")]
    assert pages == PAGES
    assert recorded(wrapper) == [("list", "p", "a", "/")]


async def test_the_meter_sees_the_get_of_a_blob_as_a_download() -> None:
    meter = PassMeter()
    store = MeteredStore(Recorder(), meter)
    stage = meter.begin("downloading", 1, 4)
    await store.get("devices/laptop/head.json")  # not a transfer
    assert stage is not None and (stage.files_done, stage.bytes_done) == (0, 0)
    await store.get("x/blobs/c")
    assert (stage.files_done, stage.bytes_done) == (1, 4)
    assert meter.in_flight() == []
