"""Shared fixtures: the event-loop backend and the S3 servers (one of each per session):
SeaweedFS, and for compatibility s3rver and moto."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from hypothesis import settings

from dropbeard.store.s3 import S3Store
from dropbeard.store.s3client import Credentials
from tests.s3servers import NoNpm, S3Server, start_moto, start_s3rver
from tests.seaweed import Seaweed

#: Property tests draw the same examples on every run (CI must not pass or fail by luck);
#: `HYPOTHESIS_PROFILE=explore` draws new ones each run, to look for new failures.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Every async test runs on both event loops dropbeard supports: the standard asyncio
#: loop and uvloop (what the CLI and the daemon use where it is installed).
ASYNC_BACKENDS = [
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]


@pytest.fixture(params=ASYNC_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    backend: tuple[str, dict[str, object]] = request.param
    return backend


@pytest.fixture(autouse=True)
def _a_cache_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test (and the commands it runs) caches S3 request shapes in a folder of its
    own: never the user's, never another test's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def pytest_report_header() -> list[str]:
    return [f"S3 leg: {'SKIPPED (DROPBEAR_SKIP_S3=1)' if _skip_s3() else 'SeaweedFS'}"]


def _skip_s3() -> bool:
    return os.environ.get("DROPBEAR_SKIP_S3") == "1"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A running SeaweedFS. If it cannot start, the tests that need it FAIL (the S3 leg
    must run); set DROPBEAR_SKIP_S3=1 to skip them knowingly on a machine without it."""
    if _skip_s3():
        pytest.skip("DROPBEAR_SKIP_S3=1")
    server = Seaweed.start(tmp_path_factory.mktemp("seaweed"))
    try:
        anyio.run(server.wait_writable)
        server.startup_seconds = round(server.startup_seconds, 2)
        print(f"\nSeaweedFS ready in {server.startup_seconds:.2f}s at {server.endpoint}")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3rver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """s3rver: no ListParts, no multipart abort, conditional writes ignored. Installed
    with npm on first use; skipped (saying why) only where npm is missing."""
    try:
        server = start_s3rver(tmp_path_factory.mktemp("s3rver"))
    except NoNpm as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server (a test dependency in pyproject.toml)."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


def make_s3_store(server: Seaweed | S3Server, prefix: str, **kwargs: object) -> S3Store:
    creds = kwargs.pop("credentials", Credentials(server.access_key, server.secret_key))
    return S3Store(
        server.bucket,
        prefix,
        endpoint_url=server.endpoint,
        addressing_style="path",
        credentials=creds,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def s3_store(seaweed: Seaweed) -> AsyncIterator[S3Store]:
    """A fresh, empty S3 store: its own random prefix in the shared test bucket."""
    store = make_s3_store(seaweed, f"t-{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def small_ahead(monkeypatch: pytest.MonkeyPatch) -> int:
    """A first sync sends only files of under 64 KiB while it hashes (`sync.ahead`), so
    that a test's larger files are read again and sent by the upload step; the limit."""
    from dropbeard.sync import ahead

    monkeypatch.setattr(ahead, "LARGEST", 64 * 1024 - 1)
    return ahead.LARGEST


# --- one remote shared by several devices (tests/converge.py, tests/test_converge_*.py) ----

import typing  # noqa: E402

if typing.TYPE_CHECKING:  # the fixtures import it lazily: only they need the CLI
    from tests.converge import Bucket


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def remote(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Bucket:
    """A fresh remote for devices driven through the CLI: a local directory, then a prefix
    in the SeaweedFS bucket."""
    from tests.converge import Cli, local_bucket, s3_bucket

    if request.param == "s3":
        return s3_bucket(request.getfixturevalue("seaweed"), monkeypatch, Cli(capsys))
    return local_bucket(tmp_path, Cli(capsys))


@pytest.fixture
def s3_remote(
    seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Bucket:
    """A fresh prefix in the SeaweedFS bucket, for devices driven through the CLI."""
    from tests.converge import Cli, s3_bucket

    return s3_bucket(seaweed, monkeypatch, Cli(capsys))
