"""What dropbeard's S3 requests look like on the wire, seen by a recording proxy in front
of the real SeaweedFS server (not a mock of the client): one round trip per PUT (no
`Expect: 100-continue`), and a known payload hash signed instead of hashed again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiobotocore.hooks
import botocore.awsrequest
import botocore.loaders
import botocore.useragent
import botocore.utils
import pytest

from dropbeard.core.errors import DropbeardError
from dropbeard.store import s3, s3requests
from dropbeard.store.s3 import S3Store
from dropbeard.store.s3requests import PER_REQUEST_PARAMETERS, parse_timestamp
from tests.httpspy import HttpSpy, spied_s3
from tests.seaweed import Seaweed

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

MiB = 1024 * 1024


@pytest.fixture
async def spied(seaweed: Seaweed) -> AsyncIterator[tuple[S3Store, HttpSpy]]:
    async with spied_s3(seaweed, "w") as spied:
        yield spied


def _puts(spy: HttpSpy) -> list[dict[str, str]]:
    return [r.headers for r in spy.requests if r.method == "PUT"]


async def test_no_put_waits_for_100_continue(
    spied: tuple[S3Store, HttpSpy], tmp_path: Path
) -> None:
    store, spy = spied
    await store.put_if_absent("blobs/small", b"x" * 4096)
    await store.put("manifest", b"{}")
    medium = tmp_path / "medium"
    medium.write_bytes(os.urandom(MiB))
    await store.put_file("blobs/medium", medium)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(17 * MiB))  # over 16 MiB: streamed, still one PUT
    await store.put_file("blobs/big", big)
    puts = _puts(spy)
    assert len(puts) == 4
    assert [h for h in puts if "expect" in h] == []
    assert [h for h in puts if "amz-sdk-invocation-id" in h] == []  # no uuid per request
    assert await store.get("blobs/medium") == medium.read_bytes()


async def test_a_known_payload_hash_is_signed_as_given(spied: tuple[S3Store, HttpSpy]) -> None:
    store, spy = spied
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    await store.put_if_absent("blobs/known", data, sha256=sha)
    assert _puts(spy)[-1]["x-amz-content-sha256"] == sha
    assert await store.get("blobs/known") == data


async def test_a_streamed_file_is_one_put_signed_with_its_sha256(
    spied: tuple[S3Store, HttpSpy], tmp_path: Path
) -> None:
    """No multipart upload: a file over 16 MiB is one PUT, its payload hash the file's
    SHA-256 (a server that checks it refuses other bytes)."""
    store, spy = spied
    data = os.urandom(17 * MiB)
    (tmp_path / "big").write_bytes(data)
    await store.put_file("blobs/big", tmp_path / "big")
    (put,) = _puts(spy)
    assert put["x-amz-content-sha256"] == hashlib.sha256(data).hexdigest()
    assert put["content-length"] == str(len(data))
    assert await store.get("blobs/big") == data


async def test_response_timestamps_are_parsed_by_their_fixed_formats(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _spy = spied
    await store.put("a", b"x")

    def general_parser(*_args: object) -> None:
        raise AssertionError("dateutil's general parser was used")

    monkeypatch.setattr(botocore.utils, "_parse_timestamp_with_tzinfo", general_parser)
    before = time.time()
    info = await store.head("a")  # Last-Modified: an HTTP date
    (page,) = [p async for p in store.list("a")]  # LastModified: ISO 8601
    assert abs(info.last_modified - before) < 60
    assert page.objects[0].last_modified == pytest.approx(info.last_modified, abs=1)


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 02 Dec 2026 02:40:16 GMT",
        "Thu, 29 Feb 2024 23:59:59 GMT",
        "2026-12-02T02:40:16.123Z",
        "2026-12-02T02:40:16Z",
        "2026-12-02T02:40:16.1234567Z",
        "2026-12-02T02:40:16+00:00",  # not a form S3 sends: botocore's parser
        "1700000000",
    ],
)
def test_timestamps_parse_as_botocore_parses_them(value: str) -> None:
    assert parse_timestamp(value) == botocore.utils.parse_timestamp(value)


def test_an_impossible_date_is_refused_as_botocore_refuses_it() -> None:
    with pytest.raises(ValueError, match="day is out of range"):
        parse_timestamp("Fri, 29 Feb 2030 00:00:00 GMT")


async def test_a_download_is_written_a_whole_chunk_at_a_time(
    spied: tuple[S3Store, HttpSpy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _spy = spied
    data = os.urandom(5 * MiB + 123)
    await store.put("big", data)
    trips: list[list[int]] = []
    write_pieces = s3._write_pieces

    def counted(out: Any, pieces: list[bytes], hasher: Any, key: str) -> None:
        trips.append([len(p) for p in pieces])
        write_pieces(out, pieces, hasher, key)

    monkeypatch.setattr(s3, "_write_pieces", counted)
    await store.get_file("big", tmp_path / "big", expected_sha256=hashlib.sha256(data).hexdigest())
    assert (tmp_path / "big").read_bytes() == data
    # One worker-thread trip per CHUNK (the last one less), not one per network read; the
    # pieces as the connection received them, not joined into one copy.
    sizes = [sum(t) for t in trips]
    assert sum(sizes) == len(data)
    assert all(size >= s3.CHUNK for size in sizes[:-1])
    assert len(trips) <= 6
    assert max(len(t) for t in trips) > 1


async def test_the_user_agent_is_built_once_per_client(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, spy = spied
    await store.put("a", b"x")  # opens the client, which builds its User-Agent

    def rebuilt(*_args: object) -> str:
        raise AssertionError("the User-Agent was built again")

    monkeypatch.setattr(botocore.useragent.UserAgentString, "to_string", rebuilt)
    await store.put("b", b"y")
    assert await store.get("b") == b"y"
    agents = {r.headers["user-agent"] for r in spy.requests}
    assert len(agents) == 1
    assert "botocore/" in agents.pop()


async def test_each_operation_on_the_bucket_resolves_its_endpoint_once(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _spy = spied
    client = await store._client()
    resolved: list[str] = []
    resolve = client._ruleset_resolver._get_provider_params

    async def counted(operation_model: Any, *args: Any) -> Any:
        resolved.append(operation_model.name)
        return await resolve(operation_model, *args)

    monkeypatch.setattr(client._ruleset_resolver, "_get_provider_params", counted)
    for i in range(5):
        await store.put(f"k{i}", b"x")
        await store.get(f"k{i}")
    assert sorted(resolved) == ["GetObject", "PutObject"]


async def test_a_region_learned_for_the_bucket_is_signed_for(
    spied: tuple[S3Store, HttpSpy],
) -> None:
    """botocore's region redirector changes an endpoint setting ("builtin") for a bucket
    it learned lives elsewhere; a remembered endpoint must not hide that change."""
    store, spy = spied
    client = await store._client()
    await store.put("a", b"x")
    learned: dict[str, str] = {}

    def redirect_from_cache(builtins: dict[str, Any], **_: Any) -> None:
        if learned:
            builtins["AWS::Region"] = learned["region"]

    client.meta.events.register("before-endpoint-resolution.s3", redirect_from_cache)
    learned["region"] = "eu-central-1"
    with contextlib.suppress(DropbeardError):  # SeaweedFS refuses the foreign region
        await store.put("b", b"y")
    scopes = [r.headers["authorization"].split("/")[2] for r in spy.requests]
    assert scopes[0] == "us-east-1"
    assert scopes[-1] == "eu-central-1"


def test_botocores_s3_endpoint_rules_ignore_what_changes_per_request() -> None:
    """The endpoint is remembered per operation and bucket (s3requests._endpoints_once),
    which holds only while the rules never read a per-request parameter."""
    loader = botocore.loaders.create_loader()
    rules = json.dumps(loader.load_service_model("s3", "endpoint-rule-set-1"))
    for name in PER_REQUEST_PARAMETERS:
        assert f'"ref": "{name}"' not in rules
    assert '"ref": "Bucket"' in rules  # the check would see a reference


async def test_response_headers_are_named_as_the_parser_looks_them_up(
    spied: tuple[S3Store, HttpSpy],
) -> None:
    store, _spy = spied
    client = await store._client()
    model = client.meta.service_model.operation_model("GetObject")
    response: dict[str, Any] = {
        "headers": botocore.awsrequest.HeadersDict(
            {"etag": '"1"', "last-modified": "x", "x-amz-request-id": "r", "X-Other": "o"}
        )
    }
    plain = {"ETag": '"1"', "LAST-modified": "x", "x-amz-request-id": "r", "X-Other": "o"}
    s3requests._plain_headers(response, model)
    expected = {
        "ETag": '"1"',
        "Last-Modified": "x",
        "x-amz-request-id": "r",  # looked up in lower case, for the response metadata
        "x-other": "o",
    }
    assert response["headers"] == expected
    response = {"headers": plain}  # any other mapping of headers
    s3requests._plain_headers(response, model)
    assert response["headers"] == expected
    await store.put("k", b"12345")
    info = await store.head("k")
    assert info.size == 5 and info.etag and info.last_modified > 0


async def test_events_reach_every_handler_as_aiobotocore_dispatches_them(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _spy = spied
    events = (await store._client()).meta.events

    async def wrapped(obj: Any) -> Any:
        raise AssertionError("each handler's answer wrapped in a coroutine of its own")

    monkeypatch.setattr(aiobotocore.hooks, "resolve_awaitable", wrapped)
    await store.put("k", b"x")  # a whole request through the dispatcher
    calls: list[str] = []

    def plain(**kwargs: Any) -> None:
        calls.append(f"plain {kwargs['event_name']}")

    async def awaited(**kwargs: Any) -> str:
        calls.append("awaited")
        return "answer"

    def later(**_: Any) -> str:
        calls.append("later")
        return "never asked"

    events.register("dropbeard-test.s3", plain)
    events.register("dropbeard-test.s3.Op", awaited)
    events.register("dropbeard-test", later)  # registered after the first emit's cache

    responses = await events.emit("dropbeard-test.s3.Op", x=1)
    assert [r for _h, r in responses] == ["answer", None, "never asked"]
    assert calls == ["awaited", "plain dropbeard-test.s3.Op", "later"]
    calls.clear()
    handler, answer = await events.emit_until_response("dropbeard-test.s3.Op")
    assert (handler, answer, calls) == (awaited, "answer", ["awaited"])
