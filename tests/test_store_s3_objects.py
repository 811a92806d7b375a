"""Single-object GET, HEAD and PUT stamped from the shape botocore showed
(dropbeard.store.s3objects): after the first request of each kind botocore builds no
more of them, a stamped request is exactly the request botocore sends, the real server
accepts it, and its errors are botocore's errors."""

from __future__ import annotations

import calendar
import hashlib
import os
import re
import time
import types
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dropbeard.core.errors import (
    DropbeardError,
    IntegrityError,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
)
from dropbeard.store import s3objects, s3route, s3shape, s3shapes, s3wire
from dropbeard.store.base import FileSlot
from dropbeard.store.s3 import S3Store
from dropbeard.store.s3client import Credentials
from tests.httpspy import HttpSpy, spied_s3
from tests.seaweed import Seaweed
from tests.tlscerts import loopback_tls

pytestmark = [pytest.mark.anyio, pytest.mark.s3]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def spied(seaweed: Seaweed) -> AsyncIterator[tuple[S3Store, HttpSpy]]:
    async with spied_s3(seaweed, "o") as spied:
        yield spied


async def _botocore_calls(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operations botocore builds from now on, in order."""
    client = await store._client()
    calls: list[str] = []
    make = client._make_api_call

    async def counted(operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        return await make(operation, params)

    monkeypatch.setattr(client, "_make_api_call", counted)
    return calls


async def test_after_the_first_two_of_each_kind_botocore_builds_no_more(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, spy = spied
    calls = await _botocore_calls(store, monkeypatch)
    blobs = {f"blobs/{i}": b"blob %d" % i * (i + 1) for i in range(10)}
    for key, data in blobs.items():
        await store.put_if_absent(key, data, sha256=sha(data))
    for key, data in blobs.items():
        assert await store.get(key) == data
        info = await store.head(key)
        assert info.size == len(data) and info.etag and info.last_modified > 0

    assert sorted(calls) == ["GetObject"] * 2 + ["HeadObject"] * 2 + ["PutObject"] * 2
    puts = [r for r in spy.requests if r.method == "PUT"]
    assert len(puts) == 10  # one request each, no retry
    assert [r.headers for r in puts if "expect" in r.headers] == []  # one round trip each
    assert len(spy.requests) == 30


async def test_requests_started_together_wait_for_two_to_show_the_shape(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first upload starts dozens of PUTs at once: two go through botocore and show
    the shape, the others wait for it and are stamped (not each built by botocore)."""
    store, spy = spied
    calls = await _botocore_calls(store, monkeypatch)
    blobs = {f"together/{i}": b"blob %d" % i * (i + 1) for i in range(40)}
    got: dict[str, bytes] = {}

    async def put(key: str, data: bytes) -> None:
        await store.put_if_absent(key, data, sha256=sha(data))

    async def get(key: str) -> None:
        got[key] = await store.get(key)

    async with anyio.create_task_group() as tg:
        for key, data in blobs.items():
            tg.start_soon(put, key, data)
    async with anyio.create_task_group() as tg:
        for key in blobs:
            tg.start_soon(get, key)

    assert got == blobs
    assert sorted(calls) == ["GetObject"] * 2 + ["PutObject"] * 2
    assert len([r for r in spy.requests if r.method == "PUT"]) == 40


async def test_requests_waiting_for_a_shape_go_on_when_the_learning_ones_fail(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error answer that teaches no shape (here NoSuchBucket: a missing key would teach
    one, the server authenticated the request): the requests that waited are not held two
    at a time behind the failing ones, they go (through botocore) and report their own
    errors."""
    store, _ = spied
    client = await store._client()
    make = client._make_api_call
    calls: list[str] = []
    in_flight = [0, 0]  # now, at most

    async def slowly(operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            await anyio.sleep(0.05)  # long enough for the others to pile up behind
            return await make(operation, {**params, "Bucket": "no-such-bucket-here"})
        finally:
            in_flight[0] -= 1

    monkeypatch.setattr(client, "_make_api_call", slowly)
    missing = [f"missing/{i}" for i in range(20)]
    failed: list[str] = []

    async def get(key: str) -> None:
        try:
            await store.get(key)
        except DropbeardError:
            failed.append(key)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for key in missing:
                tg.start_soon(get, key)
    assert sorted(failed) == sorted(missing)
    assert calls == ["GetObject"] * 20
    assert in_flight[1] > 2 * s3shapes.LEARNERS  # once the first failed, the rest went together


KEYS = [
    "plain/key",
    "a key with spaces/and+plus%percent~tilde",
    "unicode/été/日本語/😀",
    "reserved/!$&'()*,;=:@[]",
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("token", [None, "a-session-token"])
async def test_a_stamped_request_is_the_request_botocore_sends(
    seaweed: Seaweed, key: str, token: str | None
) -> None:
    """Each kind of request, learned from another key, stamped for `key`: the URL and
    every header (the signature included) are those botocore sends for `key`."""
    store = S3Store(
        seaweed.bucket,
        f"o-{uuid.uuid4().hex[:12]}",
        endpoint_url=seaweed.endpoint,
        addressing_style="path",
        credentials=Credentials(seaweed.access_key, seaweed.secret_key, token),
    )
    try:
        client = await store._client()
        objects = await store._connection.objects()
        credentials = await objects._credentials()
        data = b"the same bytes"
        for operation, conditions, body in [
            ("PutObject", {"IfNoneMatch": "*"}, data),
            ("PutObject", {"IfMatch": '"an-etag"'}, data),
            ("GetObject", {}, None),
            ("GetObject", {"IfNoneMatch": '"an-etag"'}, None),
            ("HeadObject", {}, None),
            ("DeleteObject", {}, None),
        ]:
            sent = {}
            first = f"{store.prefix}/first"
            for s3_key in (first, f"{store.prefix}/{key}"):
                lesson = s3shape._Lesson(operation, s3_key)
                params: dict[str, Any] = {"Bucket": seaweed.bucket, "Key": s3_key, **conditions}
                if body is not None:
                    params |= {"Body": body, s3objects.PAYLOAD_SHA256: sha(body)}
                watched = s3shape._WATCHED.set(lesson)
                try:
                    await client._make_api_call(operation, params)
                except Exception:
                    pass
                finally:
                    s3shape._WATCHED.reset(watched)
                sent[s3_key] = lesson.sent
            shape = s3shape.learn(
                s3shape._Lesson(
                    operation, f"{store.prefix}/first", sent=sent[f"{store.prefix}/first"]
                ),
                conditions,
                credentials,
                s3shape._length(operation, body),
            )
            assert shape is not None, operation
            theirs = sent[f"{store.prefix}/{key}"]
            headers = {k.lower(): s3shape._text(v) for k, v in theirs.headers.items()}
            url, ours = shape.stamp(
                f"{store.prefix}/{key}",
                headers["x-amz-content-sha256"],
                conditions,
                headers["x-amz-date"],
                credentials,
                s3shape._length(operation, body),
            )
            assert url == theirs.url
            assert {k.lower(): v for k, v in ours.items()} == headers
            assert ("x-amz-security-token" in headers) == (token is not None)
    finally:
        await store.aclose()


@pytest.mark.parametrize("key", KEYS)
async def test_a_stamped_listing_is_the_listing_botocore_sends(seaweed: Seaweed, key: str) -> None:
    """A listing's shape, learnt from one listing, stamped for others (each optional
    parameter, keys of every kind in them): the URL, its query and every header are
    those botocore sends."""
    store = S3Store(
        seaweed.bucket,
        endpoint_url=seaweed.endpoint,
        addressing_style="path",
        credentials=Credentials(seaweed.access_key, seaweed.secret_key),
    )
    try:
        client = await store._client()
        objects = await store._connection.objects()
        credentials = await objects._credentials()
        variants: list[dict[str, Any]] = [
            {"Prefix": "first/", "MaxKeys": 1000},
            {"Prefix": key, "MaxKeys": 1000},
            {"Prefix": key, "MaxKeys": 1000, "Delimiter": "/"},
            {"Prefix": "", "MaxKeys": 7, "StartAfter": key},
            {"Prefix": key, "MaxKeys": 1000, "ContinuationToken": f"token {key}=="},
        ]
        sent = []
        for params in variants:
            lesson = s3shape._Lesson(s3shape.LISTING, "", s3shape.listing_query(params))
            watched = s3shape._WATCHED.set(lesson)
            try:
                await client.list_objects_v2(Bucket=seaweed.bucket, **params)
            except Exception:
                pass  # a made-up token: what was sent is what counts
            finally:
                s3shape._WATCHED.reset(watched)
            sent.append(lesson)
        shape = s3shape.learn(sent[0], {}, credentials, None)
        assert shape is not None
        for params, lesson in zip(variants, sent, strict=True):
            headers = {k.lower(): s3shape._text(v) for k, v in lesson.sent.headers.items()}
            url, ours = shape.stamp(
                "",
                headers["x-amz-content-sha256"],
                {},
                headers["x-amz-date"],
                credentials,
                None,
                s3shape.listing_query(params),
            )
            assert url == lesson.sent.url
            assert {k.lower(): v for k, v in ours.items()} == headers
    finally:
        await store.aclose()


async def test_keys_of_every_kind_go_both_ways_through_stamped_requests(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _spy = spied
    for warm in ("warm", "warm2"):
        await store.put_if_absent(warm, b"w", sha256=sha(b"w"))
        await store.get(warm)
    calls = await _botocore_calls(store, monkeypatch)
    for i, key in enumerate(KEYS):
        data = b"bytes of %d" % i
        await store.put_if_absent(key, data, sha256=sha(data))
        assert await store.get(key) == data
    assert calls == []
    listed = [o.key async for page in store.list("") for o in page.objects]
    assert sorted(listed) == sorted([*KEYS, "warm", "warm2"])


async def test_streamed_downloads_are_stamped_too_once_a_get_showed_the_shape(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store, _spy = spied
    big = os.urandom(5 * 1024 * 1024 + 7)
    await store.put_if_absent("big", big, sha256=sha(big))
    calls = await _botocore_calls(store, monkeypatch)
    info = await store.get_file("big", tmp_path / "first", expected_sha256=sha(big))
    assert calls == ["GetObject"]  # no shape yet: botocore streams it
    for warm in ("warm", "warm2"):
        await store.put_if_absent(warm, b"w", sha256=sha(b"w"))
        await store.get(warm)
    calls.clear()

    again = await store.get_file("big", tmp_path / "second", expected_sha256=sha(big))
    fd = os.open(tmp_path / "slot", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, len(big) + 10)
        await store.get_file("big", FileSlot(fd, 10, len(big)))
        with pytest.raises(IntegrityError, match="not the 100 expected"):
            await store.get_file("big", FileSlot(fd, 0, 100))
    finally:
        os.close(fd)
    with pytest.raises(NotFound, match="downloading missing"):
        await store.get_file("missing", tmp_path / "missing")

    assert calls == []
    assert (tmp_path / "first").read_bytes() == (tmp_path / "second").read_bytes() == big
    assert (tmp_path / "slot").read_bytes()[10:] == big
    assert not (tmp_path / "missing").exists()
    assert (again.size, again.etag) == (info.size, info.etag) == (len(big), info.etag)
    assert again.last_modified == info.last_modified > 0


async def test_errors_are_the_errors_botocore_raises(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _spy = spied
    for key in ("there", "also"):
        await store.put_if_absent(key, b"x", sha256=sha(b"x"))
        assert await store.get(key) == b"x"
        await store.head(key)
    calls = await _botocore_calls(store, monkeypatch)

    with pytest.raises(PreconditionFailed, match="creating there"):
        await store.put_if_absent("there", b"x", sha256=sha(b"x"))
    with pytest.raises(NotFound, match="reading missing"):
        await store.get("missing")
    with pytest.raises(NotFound, match="checking missing"):
        await store.head("missing")
    etag = (await store.head("there")).etag
    assert await store.get_if_changed("there", etag) is None  # 304 Not Modified
    assert calls == []

    objects = await store._connection.objects()
    right = await objects._credentials()

    async def wrong_secret() -> Any:
        return types.SimpleNamespace(access_key=right.access_key, secret_key="no", token=None)

    monkeypatch.setattr(objects, "_credentials", wrong_secret)
    with pytest.raises(Unauthorized, match="access denied"):
        await store.get("there")


async def test_a_redirect_is_sent_again_through_botocore_which_shows_the_shape_anew(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 301 (a bucket that lives in another region, on AWS) is botocore's to follow."""
    store, _spy = spied
    await store.put_if_absent("a", b"x", sha256=sha(b"x"))
    await store.put_if_absent("a2", b"x2", sha256=sha(b"x2"))
    calls = await _botocore_calls(store, monkeypatch)
    send = s3wire.Wire.send
    redirected: list[str] = []

    async def redirect_once(wire: s3wire.Wire, method: str, url: str, *args: Any) -> Any:
        if not redirected:
            redirected.append(url)
            return s3route.Answer(301, {}, b"")
        return await send(wire, method, url, *args)

    monkeypatch.setattr(s3wire.Wire, "send", redirect_once)
    await store.put_if_absent("b", b"y", sha256=sha(b"y"))
    await store.put_if_absent("c", b"z", sha256=sha(b"z"))

    assert len(redirected) == 1
    # "b" and "c" again through botocore, which shows the shape twice; "d" stamped again
    await store.put_if_absent("d", b"w", sha256=sha(b"w"))
    assert calls == ["PutObject", "PutObject"]
    assert [await store.get(k) for k in "bcd"] == [b"y", b"z", b"w"]


async def test_a_shape_that_does_not_stamp_back_stays_with_botocore(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header some handler adds per request, unknown to the stamp, keeps every request
    of that kind with botocore rather than sending something botocore would not."""
    store, spy = spied
    client = await store._client()
    serial = iter(range(1000))

    def add_trace(request: Any, **_: Any) -> None:
        request.headers["X-Trace-Serial"] = str(next(serial))

    client.meta.events.register("request-created.s3.PutObject", add_trace)
    calls = await _botocore_calls(store, monkeypatch)
    for i in range(3):
        await store.put_if_absent(f"k{i}", b"%d" % i, sha256=sha(b"%d" % i))
    assert calls == ["PutObject"] * 3
    assert [r.headers.get("x-trace-serial") for r in spy.requests] == ["0", "1", "2"]
    objects = await store._connection.objects()
    assert objects._shapes["PutObject"] is None


async def test_stamped_requests_keep_their_connection_alive(
    spied: tuple[S3Store, HttpSpy],
) -> None:
    store, spy = spied
    for i in range(6):
        await store.put_if_absent(f"k{i}", b"%d" % i, sha256=sha(b"%d" % i))
        assert await store.get(f"k{i}") == b"%d" % i
    # one keep-alive connection botocore's first requests took, one for the stamped ones
    # (and those it opened beside it, for the bursts a command's first request leads)
    assert spy.connections == 2 + s3wire.FIRST_SPARES
    assert {r.headers.get("accept-encoding") for r in spy.requests} == {"identity"}
    assert {r.headers.get("host") for r in spy.requests} == {f"127.0.0.1:{spy.port}"}


async def test_stamped_requests_go_through_aiohttps_session_where_a_proxy_is_set(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route the wire cannot take alike (a proxy: here faked as set, and as direct)
    stays with aiohttp's session, which shares botocore's connection."""
    monkeypatch.setattr(s3objects, "wire_for", lambda route, prefix: None)
    store, spy = spied
    for i in range(6):
        await store.put_if_absent(f"k{i}", b"%d" % i, sha256=sha(b"%d" % i))
        assert await store.get(f"k{i}") == b"%d" % i
    assert spy.connections == 1
    objects = await store._connection.objects()
    assert all(isinstance(r, s3route.Route) for r in objects._routes.values())


async def test_without_a_route_stamped_requests_go_through_aiobotocores_send(
    spied: tuple[S3Store, HttpSpy], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_route(*_args: Any) -> None:
        return None

    monkeypatch.setattr(s3objects, "route_for", no_route)
    store, spy = spied
    for key in ("a", "b"):
        await store.put_if_absent(key, b"x", sha256=sha(b"x"))
        await store.get(key)
    calls = await _botocore_calls(store, monkeypatch)
    await store.put_if_absent("c", b"y", sha256=sha(b"y"))
    assert await store.get("c") == b"y"
    with pytest.raises(NotFound):
        await store.get("missing")
    assert calls == []
    assert len(spy.requests) == 7


async def test_fixed_credentials_are_frozen_once_and_refreshable_ones_asked_each_time(
    spied: tuple[S3Store, HttpSpy],
) -> None:
    store, _spy = spied
    client = await store._client()
    source = client._request_signer._credentials
    asked: list[int] = []
    objects = await store._connection.objects()
    objects._direct = None  # as for credentials only botocore finds (a profile, a role)

    class Refreshable:  # a role's or SSO's credentials: not fixed
        async def get_frozen_credentials(self) -> Any:
            asked.append(1)
            return await source.get_frozen_credentials()

    client._request_signer._credentials = Refreshable()
    for i in range(5):
        await store.put_if_absent(f"k{i}", b"x", sha256=sha(b"x"))
    assert len(asked) >= 5  # every stamped request asked (and botocore's own)
    client._request_signer._credentials = source
    objects = await store._connection.objects()
    assert objects._fixed is None
    await store.get("k0")
    assert objects._fixed is not None
    assert objects._fixed.secret_key == source.secret_key


def test_the_timestamp_is_now_in_sigv4s_form() -> None:
    """Now, to the second (a virtual machine's clock may step back by a fraction of a
    second between two readings: a once-seen `before > stamped` by one second)."""
    stamped = s3shape._timestamp()
    assert re.fullmatch(r"\d{8}T\d{6}Z", stamped)
    when = calendar.timegm(time.strptime(stamped, "%Y%m%dT%H%M%SZ"))
    assert abs(when - time.time()) <= 2


async def test_over_https_stamped_requests_verify_the_server_as_botocore_does(
    seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over https the stamped requests' own connections use the TLS context aiobotocore
    built (here: a CA bundle naming a CA of the test's own): they reach the server, and
    with another bundle nothing does."""
    ca_file, server_tls = loopback_tls(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file))
    async with spied_s3(seaweed, "tls", server_tls) as (store, spy):
        assert spy.endpoint.startswith("https://")
        for i in range(4):
            await store.put_if_absent(f"k{i}", b"%d" % i, sha256=sha(b"%d" % i))
            assert await store.get(f"k{i}") == b"%d" % i
        objects = await store._connection.objects()
        assert {type(r) for r in objects._routes.values()} == {s3wire.Wire}
        # botocore's first requests', and the stamped ones' (with those beside it)
        assert spy.connections == 2 + s3wire.FIRST_SPARES
        assert len(spy.requests) == 8

    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "other" / "ca.pem"))
    (tmp_path / "other").mkdir()
    loopback_tls(tmp_path / "other")  # a CA that did not sign the server's certificate
    async with spied_s3(seaweed, "tls", server_tls) as (store, spy):
        with pytest.raises(Unavailable):
            await store.put_if_absent("k", b"x", sha256=sha(b"x"))
        assert spy.requests == []
