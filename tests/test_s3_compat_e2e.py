"""dropbeard on S3 servers that lack features SeaweedFS has, end to end through the CLI:
s3rver (no ListParts, no multipart abort, If-None-Match and If-Match ignored on writes)
and moto's standalone server. A missing feature is handled, never a wedged folder; `init`
says plainly when the server ignores conditional writes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from dropbeard.core.chunking import MiB
from dropbeard.store.s3 import S3Store
from dropbeard.sync.chunking import Chunker
from tests.converge import Bucket, Cli, Device, devices, local_bucket, s3_bucket
from tests.s3servers import S3Server

COMPAT = [
    pytest.param("s3rver", marks=pytest.mark.s3compat),
    pytest.param("moto", marks=pytest.mark.s3compat),
]


@pytest.fixture(params=COMPAT)
def compat(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Bucket:
    """A fresh prefix on s3rver, then on moto."""
    server: S3Server = request.getfixturevalue(request.param)
    return s3_bucket(server, monkeypatch, Cli(capsys))


# --- init says what the server ignores --------------------------------------------------


@pytest.mark.parametrize(
    ("server", "ignored"),
    [
        ("local", ()),
        pytest.param("seaweed", (), marks=pytest.mark.s3),
        pytest.param("moto", (), marks=pytest.mark.s3compat),
        pytest.param("s3rver", ("If-None-Match: *", "If-Match"), marks=pytest.mark.s3compat),
    ],
)
def test_init_says_plainly_when_the_server_ignores_conditional_writes(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    server: str,
    ignored: Sequence[str],
) -> None:
    cli = Cli(capsys)
    if server == "local":
        bucket = local_bucket(tmp_path, cli)
    else:
        bucket = s3_bucket(request.getfixturevalue(server), monkeypatch, cli)
    got = cli("init", str(tmp_path / "a"), "--remote", bucket.url, *bucket.init_args,
              "--root-id", "r1", "--device-id", "a", "-q")  # fmt: skip

    assert got.code == 0, got.err
    warnings = [line for line in got.err.splitlines() if line.startswith("warning:")]
    if ignored:
        (warning,) = warnings
        assert all(header in warning for header in ignored), warning
        assert "registry" in warning
    else:
        assert warnings == [], got.err
    # the probe leaves nothing behind: the registry is the root's only object
    assert list(bucket.objects()) == [bucket.keys.registry]
    (a,) = [Device(bucket, tmp_path / "a", "a")]
    a.write("note.txt", "synced all the same\n")
    a.sync()


# --- an interrupted upload of a large file ---------------------------------------------------


class SimulatedCrash(Exception):
    """Stands for the process dying in the middle of an upload."""


def crash_after_two_chunks(monkeypatch: pytest.MonkeyPatch, blobs: str) -> None:
    """From now on, two chunk PUTs (under `blobs`) go through; every later one waits for
    them to land, then "dies"."""
    send = S3Store.put_if_absent
    started = {"chunks": 0}
    landed = {"chunks": 0}
    two_landed = anyio.Event()

    async def dying(self: S3Store, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if not key.startswith(blobs):
            return await send(self, key, data, sha256=sha256)
        started["chunks"] += 1
        if started["chunks"] > 2:
            await two_landed.wait()
            raise SimulatedCrash(f"killed while sending {key}")
        etag = await send(self, key, data, sha256=sha256)
        landed["chunks"] += 1
        if landed["chunks"] == 2:
            two_landed.set()
        return etag

    monkeypatch.setattr(S3Store, "put_if_absent", dying)


def count_chunk_puts(monkeypatch: pytest.MonkeyPatch, blobs: str) -> list[str]:
    """The keys under `blobs` PUT from now on."""
    send = S3Store.put_if_absent
    sent: list[str] = []

    async def counted(self: S3Store, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if key.startswith(blobs):
            sent.append(key)
        return await send(self, key, data, sha256=sha256)

    monkeypatch.setattr(S3Store, "put_if_absent", counted)
    return sent


def test_an_interrupted_upload_resumes_with_the_chunks_still_missing(
    compat: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No multipart state to resume (s3rver has no ListParts): a large file is chunks,
    each one PUT, and the next pass sends only those not in the bucket yet. The big file
    arrives, and so does every small file made since."""
    a, b = devices(compat, tmp_path, "a", "b")
    big = os.urandom(40 * MiB)
    a.write("big.bin", big)
    chunks = Chunker().digest_file(a.path("big.bin")).chunks
    assert chunks is not None and len({c.sha256 for c in chunks}) > 3
    chunk_keys = {compat.keys.blob(c.sha256) for c in chunks}
    blobs = compat.keys.blobs_prefix
    with monkeypatch.context() as patched:
        crash_after_two_chunks(patched, blobs)
        assert a.cli("sync", str(a.root), "-q").code == 1  # the pass died
    there = chunk_keys & set(compat.objects())
    assert len(there) == 2
    assert compat.keys.head("a") not in compat.objects()

    a.write("small.txt", "made after the crash\n")
    with monkeypatch.context() as patched:
        sent = count_chunk_puts(patched, blobs)
        a.sync()
    assert set(sent) & chunk_keys == chunk_keys - there  # only the missing chunks went up
    assert len(set(sent) - chunk_keys) == 1  # and small.txt
    b.sync()

    assert b.read("big.bin") == big
    assert b.read("small.txt") == b"made after the crash\n"
    assert a.sync().json["snapshot"] is None


# --- everything else works on these servers too ------------------------------------------


def test_two_devices_converge_on_a_server_that_lacks_features(
    compat: Bucket, tmp_path: Path
) -> None:
    a, b = devices(compat, tmp_path, "a", "b")
    a.write("docs/a.txt", "first\n")
    a.write("doomed.txt", "to be deleted\n")
    a.path("empty").mkdir()
    os.symlink("docs/a.txt", a.path("current"))
    a.sync()
    b.sync()
    assert b.tree() == a.tree()

    b.write("docs/a.txt", "second, from b\n")
    b.path("doomed.txt").unlink()
    b.write("docs/b.txt", "new on b\n")
    b.sync()
    a.sync()
    assert a.tree() == b.tree()
    assert sorted(a.tree()) == ["current", "docs", "docs/a.txt", "docs/b.txt", "empty"]

    before = compat.objects()
    assert a.sync().json["snapshot"] is None and b.sync().json["snapshot"] is None
    assert compat.objects() == before
