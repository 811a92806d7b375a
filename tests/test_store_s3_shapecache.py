"""Request shapes kept from one process to the next (dropbeard.store.s3shapecache): a
store that finds the shapes an earlier one learnt stamps every request from them without
opening a client, or importing botocore; a shape that is wrong, or a cache that is
unreadable, costs a request through botocore, never a wrong answer."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dropbeard.core.errors import DropbeardError, ListFailed, NotFound, Unavailable
from dropbeard.store import s3objects, s3route, s3shape, s3wire
from dropbeard.store.s3 import S3Store
from dropbeard.store.s3client import Credentials
from dropbeard.store.s3shapecache import Kept, ShapeCache, cache_folder, identity
from tests.httpspy import http_spy
from tests.seaweed import Seaweed
from tests.tlscerts import loopback_tls

pytestmark = [pytest.mark.anyio]


EVERY_KIND = {"GetObject", "HeadObject", "PutObject", "DeleteObject", "ListObjectsV2"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(seaweed: Seaweed, prefix: str, endpoint: str | None = None) -> S3Store:
    return S3Store(
        seaweed.bucket,
        prefix,
        endpoint_url=endpoint or seaweed.endpoint,
        addressing_style="path",
        credentials=Credentials(seaweed.access_key, seaweed.secret_key),
    )


async def _every_kind(store: S3Store, tag: str) -> list[str]:
    """Two requests of every kind a pass makes; the keys listed at the end."""
    for i in range(2):
        data = f"{tag} {i}".encode()
        await store.put_if_absent(f"{tag}/k{i}", data, sha256=sha(data))
        assert await store.get(f"{tag}/k{i}") == data
        assert (await store.head(f"{tag}/k{i}")).size == len(data)
        with pytest.raises(NotFound):
            await store.get(f"{tag}/missing")
        listed = [o.key async for page in store.list(f"{tag}/") for o in page.objects]
    await store.delete(f"{tag}/k0")
    await store.delete(f"{tag}/k0")  # deleting what is gone is no error
    return listed


async def _learnt(seaweed: Seaweed, prefix: str) -> S3Store:
    """A store (closed) that made two requests of every kind under `prefix`/a, and so
    kept every shape."""
    store = _store(seaweed, prefix)
    try:
        await _every_kind(store, "a")
    finally:
        await store.aclose()
    return store


@pytest.mark.s3
async def test_a_later_store_stamps_every_request_from_the_shapes_an_earlier_one_kept(
    seaweed: Seaweed,
) -> None:
    prefix = f"c-{uuid.uuid4().hex[:12]}"
    async with http_spy(seaweed.endpoint) as spy:
        first = _store(seaweed, prefix, spy.endpoint)
        try:
            assert await _every_kind(first, "a") == ["a/k0", "a/k1"]
        finally:
            await first.aclose()
        assert first._connection._cache is not None
        kept = first._connection._cache.load()
        assert set(kept.shapes) == EVERY_KIND
        before, connections = len(spy.requests), spy.connections

        later = _store(seaweed, prefix, spy.endpoint)
        try:
            assert await _every_kind(later, "b") == ["b/k0", "b/k1"]
            assert later._connection._client is None  # no client: botocore made nothing
            objects = await later._connection.objects()
            assert objects._provisional == set()  # the server confirmed them
        finally:
            await later.aclose()
        assert len(spy.requests) - before == 12
        assert spy.connections - connections == 1 + s3wire.FIRST_SPARES


@pytest.mark.s3
async def test_a_missing_key_teaches_the_shape_of_its_request(seaweed: Seaweed) -> None:
    """`init` of a new root GETs only what is not there yet: two 404s settle the GET shape
    (the server authenticated those requests), so the next command stamps its GETs."""
    prefix = f"m-{uuid.uuid4().hex[:12]}"
    first = _store(seaweed, prefix)
    try:
        await first.put("there", b"here", sha256=sha(b"here"))
        for key in ("missing", "gone"):
            with pytest.raises(NotFound):
                await first.get(key)
        known, _ = (await first._connection.objects()).learnt()
        assert "GetObject" in known
    finally:
        await first.aclose()

    later = _store(seaweed, prefix)
    try:
        assert await later.get("there") == b"here"
        assert later._connection._client is None  # stamped: no botocore
    finally:
        await later.aclose()


@pytest.mark.s3
async def test_a_refused_request_teaches_nothing(seaweed: Seaweed) -> None:
    store = S3Store(
        seaweed.bucket,
        f"w-{uuid.uuid4().hex[:12]}",
        endpoint_url=seaweed.endpoint,
        addressing_style="path",
        credentials=Credentials(seaweed.access_key, "not-the-secret"),
    )
    try:
        for _ in range(2):
            with pytest.raises(DropbeardError):
                await store.get("missing")
        known, seen = (await store._connection.objects()).learnt()
        assert "GetObject" not in known and "GetObject" not in seen
    finally:
        await store.aclose()


def _another_user_agent(shape: s3shape.Shape) -> s3shape.Shape:
    """The shape as another process sees it: botocore's User-Agent names the features
    that process used (`m/...`)."""
    fixed = tuple(
        (k, v.replace(" m/", " m/Z,") if k.lower() == "user-agent" else v) for k, v in shape.fixed
    )
    assert fixed != shape.fixed
    return msgspec.structs.replace(shape, fixed=fixed)


def test_shapes_alike_but_for_an_unsigned_header_settle_and_others_do_not() -> None:
    shape = s3shape.Shape(
        "PUT", "http://h/b/", "/b/", "h", (("User-Agent", "x m/a"), ("X-Fixed", "1")), ("r", "s3")
    )
    assert shape.alike(_another_user_agent(shape))
    assert not shape.alike(msgspec.structs.replace(shape, fixed=(("User-Agent", "x m/a"),)))
    assert not shape.alike(msgspec.structs.replace(shape, host="g"))


@pytest.mark.s3
async def test_a_kind_each_command_makes_once_settles_over_two_commands(
    seaweed: Seaweed,
) -> None:
    """`init` deletes its probe once: botocore shows the DELETE's shape to one command,
    the next one sees it again and keeps it, and the one after stamps it."""
    prefix = f"d-{uuid.uuid4().hex[:12]}"
    for run in range(3):
        store = _store(seaweed, prefix)
        try:
            await _every_kind(store, f"r{run}")  # two of every kind...
            if run == 0:
                await store.aclose()
                cache = store._connection._cache
                assert cache is not None
                kept = cache.load()  # ...but as if this command had made one DELETE:
                cache.save(
                    msgspec.structs.replace(
                        kept,
                        shapes={k: v for k, v in kept.shapes.items() if k != "DeleteObject"},
                        seen={"DeleteObject": _another_user_agent(kept.shapes["DeleteObject"])},
                    )
                )
                continue
            await store.delete(f"r{run}/k1")
            assert (store._connection._client is None) == (run == 2)
        finally:
            await store.aclose()
        assert cache.load().seen == {}
        assert set(cache.load().shapes) == EVERY_KIND


@pytest.mark.s3
async def test_over_https_a_later_store_verifies_the_server_as_botocore_would(
    seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over https (here a CA of the test's own, named by AWS_CA_BUNDLE as botocore reads
    it) a later store stamps with no client, on connections that trust that bundle."""
    ca_file, server_tls = loopback_tls(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file))
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    async with http_spy(seaweed.endpoint, server_tls) as spy:
        assert spy.endpoint.startswith("https://")
        first = _store(seaweed, prefix, spy.endpoint)
        try:
            await _every_kind(first, "a")
        finally:
            await first.aclose()
        before = len(spy.requests)
        later = _store(seaweed, prefix, spy.endpoint)
        try:
            assert await _every_kind(later, "b") == ["b/k0", "b/k1"]
            assert later._connection._client is None
        finally:
            await later.aclose()
        assert len(spy.requests) - before == 12


@pytest.mark.s3
async def test_over_https_a_server_our_context_refuses_is_left_to_botocore(
    seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA only botocore knows of (here: our context made to trust none): the request
    goes through botocore, which verifies the server with its own, and so do the rest."""
    ca_file, server_tls = loopback_tls(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file))
    prefix = f"r-{uuid.uuid4().hex[:12]}"
    async with http_spy(seaweed.endpoint, server_tls) as spy:
        first = _store(seaweed, prefix, spy.endpoint)
        try:
            await _every_kind(first, "a")
        finally:
            await first.aclose()
        monkeypatch.setattr(s3objects, "default_tls", lambda: s3wire._tls_trusting(None))
        later = _store(seaweed, prefix, spy.endpoint)
        try:
            assert await later.get("a/k1") == b"a 1"
            assert later._connection._client is not None
            assert await _every_kind(later, "b") == ["b/k0", "b/k1"]
        finally:
            await later.aclose()


def test_a_ca_bundle_in_the_aws_config_file_leaves_https_to_botocore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    def direct(endpoint: str) -> bool:
        store = S3Store("b", endpoint_url=endpoint, credentials=Credentials("k", "s" * 16))
        return store._connection._objects._direct is not None

    assert direct("https://s3.example.com")
    config.write_text("[profile work]\nca_bundle = /etc/corp-ca.pem\n")
    assert not direct("https://s3.example.com")
    assert direct("http://s3.example.com")  # no TLS to verify


@pytest.mark.s3
def test_a_later_command_does_not_import_botocore(seaweed: Seaweed, tmp_path: Path) -> None:
    """The point of the cache: a process whose requests are all stamped never imports
    aiobotocore, aiohttp or botocore (~0.3 s of a command's start)."""
    code = """if True:
        import asyncio, hashlib, sys
        from dropbeard.store.s3 import S3Store
        from dropbeard.store.s3client import Credentials

        async def main():
            store = S3Store(sys.argv[1], sys.argv[2], endpoint_url=sys.argv[3],
                            credentials=Credentials(sys.argv[4], sys.argv[5]))
            try:
                for i in range(2):
                    data = b"%d" % i
                    await store.put(f"k{i}", data, sha256=hashlib.sha256(data).hexdigest())
                    assert await store.get(f"k{i}") == data
                    await store.head(f"k{i}")
                    assert [p async for p in store.list("")]
                    await store.delete(f"k{i}")
            finally:
                await store.aclose()
            print(*sorted(m for m in ("botocore", "aiobotocore", "aiohttp") if m in sys.modules))

        asyncio.run(main())
    """
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = [seaweed.bucket, f"p-{uuid.uuid4().hex[:8]}", seaweed.endpoint]
    args += [seaweed.access_key, seaweed.secret_key]
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs == [["aiobotocore", "aiohttp", "botocore"], []]


def _tamper(store: S3Store, **changes: Any) -> None:
    """Change every kept shape's fields."""
    cache = store._connection._cache
    assert cache is not None
    kept = cache.load()
    shapes = {op: msgspec.structs.replace(shape, **changes) for op, shape in kept.shapes.items()}
    cache.save(msgspec.structs.replace(kept, shapes=shapes))


@pytest.mark.s3
@pytest.mark.parametrize(
    "wrong",
    [
        {"host": "127.0.0.1:1"},  # the signature covers another host: 403
        {"url_prefix": "WRONG", "path_prefix": "/no-such-bucket-here/"},  # NoSuchBucket
    ],
    ids=["signature", "bucket"],
)
async def test_a_kept_shape_the_server_refuses_is_learnt_again_through_botocore(
    seaweed: Seaweed, wrong: dict[str, str]
) -> None:
    prefix = f"w-{uuid.uuid4().hex[:12]}"
    first = await _learnt(seaweed, prefix)
    if wrong.get("url_prefix") == "WRONG":
        wrong = {**wrong, "url_prefix": seaweed.endpoint + wrong["path_prefix"]}
    _tamper(first, **wrong)

    later = _store(seaweed, prefix)
    try:
        assert await later.get("a/k1") == b"a 1"  # through botocore, not a wrong answer
        assert later._connection._client is not None
        assert await _every_kind(later, "b") == ["b/k0", "b/k1"]
    finally:
        await later.aclose()
    assert later._connection._cache is not None
    fixed = later._connection._cache.load().shapes  # learnt anew, and kept
    assert set(fixed) == EVERY_KIND
    assert all(shape.host != "127.0.0.1:1" for shape in fixed.values())
    assert all("no-such-bucket-here" not in shape.url_prefix for shape in fixed.values())


@pytest.mark.s3
async def test_a_kept_shape_naming_another_server_is_not_followed(seaweed: Seaweed) -> None:
    prefix = f"o-{uuid.uuid4().hex[:12]}"
    first = await _learnt(seaweed, prefix)
    port = seaweed.endpoint.rsplit(":", 1)[1]
    _tamper(first, url_prefix=f"http://127.0.0.2:{port}/{seaweed.bucket}/")
    later = _store(seaweed, prefix)
    objects = await later._connection.objects()
    try:
        assert dict(objects._shapes) == {}  # none kept: learnt anew, through botocore
        assert await later.get("a/k1") == b"a 1"
        assert later._connection._client is not None
    finally:
        await later.aclose()


@pytest.mark.s3
async def test_a_command_that_cannot_reach_the_server_keeps_the_shapes_kept(
    seaweed: Seaweed,
) -> None:
    prefix = f"u-{uuid.uuid4().hex[:12]}"
    first = await _learnt(seaweed, prefix)
    assert first._connection._cache is not None
    learnt = first._connection._cache.load().shapes
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    down = _store(seaweed, prefix, closed)
    assert down._connection._cache is not None
    moved = {
        op: msgspec.structs.replace(
            shape, url_prefix=shape.url_prefix.replace(seaweed.endpoint, closed)
        )
        for op, shape in learnt.items()
    }
    kept = Kept(
        shapes={k: v for k, v in moved.items() if k != "DeleteObject"},
        seen={"DeleteObject": moved["DeleteObject"]},
    )
    down._connection._cache.save(kept)
    down = _store(seaweed, prefix, closed)
    try:
        with pytest.raises(Unavailable):
            await down.get("a/k1")
    finally:
        await down.aclose()
    assert down._connection._cache is not None
    assert down._connection._cache.load() == kept


@pytest.mark.s3
@pytest.mark.parametrize("garbage", [b"", b"{not json", b"\x00" * 100, b'{"format": 1}'])
async def test_an_unreadable_cache_is_as_if_there_were_none(
    seaweed: Seaweed, garbage: bytes
) -> None:
    store = _store(seaweed, f"g-{uuid.uuid4().hex[:12]}")
    cache = store._connection._cache
    assert cache is not None
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_bytes(garbage)
    again = _store(seaweed, store.prefix)
    try:
        assert await _every_kind(again, "a") == ["a/k0", "a/k1"]
    finally:
        await again.aclose()
    assert set(cache.load().shapes) == EVERY_KIND


@pytest.mark.s3
async def test_a_malformed_listing_is_a_one_line_listing_error(
    seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(seaweed, f"m-{uuid.uuid4().hex[:12]}")
    try:
        await _every_kind(store, "a")
        send = s3wire.Wire.send

        async def garbled(wire: s3wire.Wire, method: str, url: str, *args: Any) -> Any:
            if "list-type=2" in url:
                return s3route.Answer(200, {}, b"<ListBucketResult><Contents><Size>x")
            return await send(wire, method, url, *args)

        monkeypatch.setattr(s3wire.Wire, "send", garbled)
        with pytest.raises(ListFailed, match=r"^listing .*a/: the listing is not XML") as caught:
            [p async for p in store.list("a/")]
        assert "\n" not in str(caught.value)
    finally:
        await store.aclose()


def test_the_cache_file_is_named_by_what_shapes_depend_on_and_holds_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: dict[str, str | None] = {
        "endpoint": "http://h:1",
        "bucket": "b",
        "access_key_id": "K",
    }
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SECRET_ACCESS_KEY": "s1"}
    name = identity(settings, env)
    assert identity(settings, {**env, "AWS_SECRET_ACCESS_KEY": "s2"}) == name
    assert identity(settings, {**env, "AWS_SESSION_TOKEN": "t"}) == name
    assert identity(settings, {**env, "AWS_REGION": "eu-west-1"}) != name
    assert identity({**settings, "bucket": "c"}, env) != name
    assert identity({**settings, "access_key_id": "L"}, env) != name
    (tmp_path / "config").write_text("[default]\ns3 =\n  addressing_style = virtual\n")
    assert identity(settings, env) != name  # the AWS config file changed

    assert cache_folder({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "dropbeard" / "s3"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder({"XDG_CACHE_HOME": "relative"}) == tmp_path / "home/.cache/dropbeard/s3"


@pytest.mark.s3
async def test_the_cache_holds_no_credential(seaweed: Seaweed) -> None:
    store = _store(seaweed, f"s-{uuid.uuid4().hex[:12]}")
    try:
        await _every_kind(store, "a")
    finally:
        await store.aclose()
    cache = store._connection._cache
    assert cache is not None
    text = cache.path.read_text()
    assert seaweed.secret_key not in text
    assert "Signature" not in text and "Authorization" not in text
    assert set(json.loads(text)["shapes"]) == set(cache.load().shapes) == EVERY_KIND


@pytest.mark.parametrize(
    ("endpoint", "env", "credentials"),
    [
        ("http://s3.example.com", {"HTTP_PROXY": "http://proxy:3128"}, True),
        ("http://s3.example.com", {"all_proxy": "http://proxy:3128"}, True),
        ("http://s3.example.com", {"AWS_PROFILE": "work"}, False),
        ("http://s3.example.com", {"AWS_ACCESS_KEY_ID": "k"}, False),  # no secret
        (None, {}, True),  # AWS itself
    ],
)
def test_requests_wait_for_a_client_where_botocore_decides_how_they_go(
    endpoint: str | None,
    env: dict[str, str],
    credentials: bool,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = S3Store(
        "b",
        endpoint_url=endpoint,
        credentials=Credentials("k", "secret0123456789") if credentials else None,
    )
    assert store._connection._cache is None
    assert store._connection._objects._direct is None


def test_each_profile_keeps_its_own_shapes() -> None:
    """A profile's settings (addressing style, checksums...) shape requests too."""

    def cache_of(profile: str | None) -> Path:
        store = S3Store(
            "b",
            endpoint_url="http://127.0.0.1:9",
            profile=profile,
            credentials=Credentials("k", "secret0123456789"),
        )
        assert store._connection._cache is not None
        return store._connection._cache.path

    assert len({cache_of(None), cache_of("work"), cache_of("home")}) == 3
    assert cache_of("work") == cache_of("work")


def test_keys_from_the_environment_sign_directly_without_a_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "envkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "envtoken")
    store = S3Store("b", endpoint_url="http://127.0.0.1:9")
    direct = store._connection._objects._direct
    assert direct is not None
    assert direct.credentials == Credentials("envkey", "envsecret", "envtoken")
    assert "envsecret" not in repr(direct.credentials)


def test_a_cache_that_cannot_be_written_costs_nothing_but_time(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    cache = ShapeCache(tmp_path / "file" / "s3", "name")
    cache.save(Kept())
    assert cache.load() == Kept()
