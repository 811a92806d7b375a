"""Which conditional writes a server honours (dropbeard.sync.probe), against a LocalStore
and wrappers that ignore one header or both, as some S3 servers do."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbeard.core.keys import RootKeys
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.probe import IF_MATCH, IF_NONE_MATCH, ignored_conditions, ignored_warning

pytestmark = pytest.mark.anyio

KEYS = RootKeys("r1")


class Ignoring(ForwardingStore):
    """A server that carries out conditional writes as plain ones."""

    def __init__(self, inner: LocalStore, headers: set[str]) -> None:
        super().__init__(inner)
        self.headers = headers

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if IF_NONE_MATCH in self.headers:
            return await self.inner.put(key, data, sha256=sha256)
        return await super().put_if_absent(key, data, sha256=sha256)

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        if IF_MATCH in self.headers:
            return await self.inner.put(key, data)
        return await super().put_if_match(key, data, etag)


@pytest.mark.parametrize(
    "headers",
    [set(), {IF_NONE_MATCH}, {IF_MATCH}, {IF_NONE_MATCH, IF_MATCH}],
    ids=["honours-both", "ignores-if-none-match", "ignores-if-match", "ignores-both"],
)
async def test_the_probe_names_exactly_the_ignored_headers(
    tmp_path: Path, headers: set[str]
) -> None:
    local = LocalStore(tmp_path)
    store = CountingStore(Ignoring(local, headers))

    got = await ignored_conditions(store, KEYS, "laptop")

    assert set(got) == headers
    assert [o async for page in local.list("") for o in page.objects] == []  # cleaned up
    assert store.counts["delete"] == 2  # each question's scratch object


def test_the_warning_names_the_server_and_what_it_ignores() -> None:
    line = ignored_warning("s3://b at http://127.0.0.1:9", [IF_NONE_MATCH, IF_MATCH])
    assert line.startswith("warning: the server at s3://b at http://127.0.0.1:9 ignores ")
    assert "If-None-Match: * and If-Match" in line and "\n" not in line
