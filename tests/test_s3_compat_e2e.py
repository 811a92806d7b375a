"""dropbeard on S3 servers that lack features SeaweedFS has, end to end through the CLI:
s3rver (no ListParts, no multipart abort, If-None-Match and If-Match ignored on writes)
and moto's standalone server. A missing feature is handled, never a wedged folder; `init`
says plainly when the server ignores conditional writes."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from dropbeard.store.multipart import MiB
from dropbeard.store.s3 import S3Store
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


# --- an interrupted multipart upload -------------------------------------------------------


class SimulatedCrash(Exception):
    """Stands for the process dying in the middle of a multipart upload."""


def crash_after_two_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, a multipart upload sends parts 1 and 2, then "dies" on part 3."""
    send = S3Store.mp_put_part
    done = {"parts": 0}
    sent_two = anyio.Event()

    async def dying(self: S3Store, key: str, upload_id: str, number: int, data: bytes) -> str:
        if number > 2:
            await sent_two.wait()
            raise SimulatedCrash(f"killed while sending part {number}")
        etag = await send(self, key, upload_id, number, data)
        done["parts"] += 1
        if done["parts"] == 2:
            sent_two.set()
        return etag

    monkeypatch.setattr(S3Store, "mp_put_part", dying)


def pending_uploads(d: Device) -> list[tuple[str, str, int]]:
    db = sqlite3.connect(f"file:{d.path('.dropbear/state.sqlite')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT * FROM uploads").fetchall()
    finally:
        db.close()


def test_an_interrupted_multipart_upload_never_wedges_the_folder(
    compat: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On s3rver the upload cannot be resumed (no ListParts): a fresh one starts. Either
    way the big file arrives, and so does every small file made since."""
    a, b = devices(compat, tmp_path, "a", "b")
    big = os.urandom(17 * MiB)  # over the 16 MiB threshold: four 5 MiB parts
    a.write("big.bin", big)
    with monkeypatch.context() as patched:
        crash_after_two_parts(patched)
        assert a.cli("sync", str(a.root), "-q").code == 1  # the pass died
    assert len(pending_uploads(a)) == 1
    assert compat.keys.head("a") not in compat.objects()

    a.write("small.txt", "made after the crash\n")
    a.sync()
    b.sync()

    assert b.read("big.bin") == big
    assert b.read("small.txt") == b"made after the crash\n"
    assert pending_uploads(a) == []
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
