"""The botocore data loader S3 clients share (`dropbeard.store.s3client.model_loader`):
the same models as botocore's own loader, for less of a one-shot command's start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import botocore.loaders
import pytest
from botocore.exceptions import DataNotFoundError, UnknownServiceError

from dropbeard.store import s3client

MODELS: list[tuple[str, Callable[[Any], Any]]] = [
    ("s3 service-2", lambda loader: loader.load_service_model("s3", "service-2")),
    ("s3 rules", lambda loader: loader.load_service_model("s3", "endpoint-rule-set-1")),
    ("sts service-2", lambda loader: loader.load_service_model("sts", "service-2")),
    ("endpoints", lambda loader: loader.load_data("endpoints")),
    ("partitions", lambda loader: loader.load_data("partitions")),
    ("retry", lambda loader: loader.load_data("_retry")),
    ("defaults", lambda loader: loader.load_data("sdk-default-configuration")),
]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """A new shared loader each call (the process's one is cached)."""

    def new() -> Any:
        monkeypatch.setattr(s3client, "_LOADER", None)
        return s3client.model_loader()

    return new


@pytest.mark.parametrize(("name", "load"), MODELS, ids=[n for n, _ in MODELS])
def test_models_are_read_as_botocore_reads_them(
    fresh: Callable[[], Any], name: str, load: Callable[[Any], Any]
) -> None:
    ours, theirs = load(fresh()), load(botocore.loaders.create_loader())
    assert ours == theirs
    if isinstance(theirs, dict) and "operations" in theirs:  # in the model's order
        assert list(ours["operations"]) == list(theirs["operations"])


def test_an_unknown_service_is_still_refused(fresh: Callable[[], Any]) -> None:
    with pytest.raises((UnknownServiceError, DataNotFoundError)):
        fresh().load_service_model("no-such-service", "service-2")


def test_loading_the_s3_model_does_not_list_every_service_folder(
    fresh: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[str] = []
    real = os.listdir

    def counting(path: Any = ".") -> list[str]:
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", counting)
    fresh().load_service_model("s3", "service-2")
    # the data folders, and S3's versions; botocore's own lists ~900 folders
    assert len(listed) <= 6, listed


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("endpoint", "loads"), [("http://127.0.0.1:9", 0), ("https://127.0.0.1:9", 1)]
)
async def test_a_plain_http_endpoint_loads_no_certificates(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, loads: int
) -> None:
    """Opening a connection loads the CA bundle (~35 ms a process) only for TLS."""
    import ssl

    loaded: list[Any] = []
    real = ssl.SSLContext.load_verify_locations

    def spy(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loaded.append(args or kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", spy)
    monkeypatch.setenv("AWS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    connection = s3client.S3Connection(
        "test",
        endpoint_url=endpoint,
        region=None,
        profile=None,
        addressing_style="path",
        credentials=s3client.Credentials("key", "secret0123456789"),
        concurrency=2,
        connect_timeout=1,
        read_timeout=1,
    )
    try:
        client = await connection.client()
        await client._endpoint.http_session._get_session(None)  # the pool, built on first use
    finally:
        await connection.aclose()
    assert len(loaded) == loads


def test_aiohttp_is_imported_without_loading_certificates_and_fails_closed() -> None:
    """`dropbeard.store.tlsdefaults`: aiohttp's unused default contexts load no CA bundle
    but still require a verified certificate, and `ssl` works as before afterwards."""
    code = """if True:
        import ssl
        before = ssl.create_default_context().cert_store_stats()["x509_ca"]
        import dropbeard.store.tlsdefaults
        import aiohttp.connector as connector
        default = connector._SSL_CONTEXT_VERIFIED
        after = ssl.create_default_context().cert_store_stats()["x509_ca"]
        print(default.cert_store_stats()["x509_ca"], default.verify_mode == ssl.CERT_REQUIRED,
              default.check_hostname, before == after)
    """
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["0", "True", "True", "True"]
