"""dropbeard's SigV4 signer (dropbeard.store.s3signer) signs exactly as botocore's own S3
signer does, and a real server that checks signatures accepts them (and refuses a
wrong secret)."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.auth
import botocore.compat
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from dropbeard.core.errors import NotFound, Unauthorized
from dropbeard.store import s3signer, s3sigv4
from dropbeard.store.s3 import S3Store
from dropbeard.store.s3client import Credentials
from dropbeard.store.s3signer import KNOWN_PAYLOAD, LeanS3SigV4Auth
from tests.seaweed import Seaweed

NOW = datetime.datetime(2026, 12, 2, 4, 5, 6)
BODY = b"some bytes"
BODY_SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for module in (botocore.auth, botocore.compat, s3signer):
        monkeypatch.setattr(module, "get_current_datetime", lambda *_a, **_k: NOW)
    yield


def _request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    body: bytes = b"",
    context: dict[str, Any] | None = None,
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, headers=headers or {}, params=params, data=body)
    request.context.update(context or {})
    return request


CASES = {
    "get": _request("GET", "http://127.0.0.1:8333/bucket/roots/r/blobs/ab/cd/abcd"),
    "head with a port-less https host": _request("HEAD", "https://bucket.s3.amazonaws.com/k"),
    "https on its default port": _request("GET", "https://s3.example.com:443/b/k"),
    "put with a body": _request(
        "PUT", "http://localhost:9000/b/k", body=BODY, headers={"If-None-Match": "*"}
    ),
    "put with a known payload hash": _request(
        "PUT", "http://localhost:9000/b/k", body=b"other", context={KNOWN_PAYLOAD: BODY_SHA}
    ),
    "a key with spaces, unicode and reserved characters": _request(
        "GET", "http://h:1/b/a%20b/%C3%A9t%C3%A9%2Bplus%26amp%3Deq~tilde"
    ),
    "a listing's query in the url": _request(
        "GET", "http://h:1/b?list-type=2&prefix=roots%2Fr%2F&start-after=roots%2Fr%2Fa%20b"
    ),
    "a listing's query as params": _request(
        "GET",
        "http://h:1/b",
        params={"list-type": "2", "prefix": "roots/r/é", "max-keys": "1000"},
    ),
    "headers with runs of spaces and mixed case": _request(
        "PUT",
        "http://h:1/b/k",
        body=BODY,
        headers={"X-Amz-Meta-Note": "  two   spaces  ", "If-Match": '"etag"', "Expect": "x"},
    ),
    "an empty unsigned payload": _request(
        "PUT",
        "https://s3.example.com/b/k",
        headers={"Content-MD5": "x"},
        context={"has_streaming_input": True},
    ),
    "an empty body with a checksum": _request(
        "PUT",
        "https://s3.example.com/b/k",
        headers={"x-amz-checksum-crc32": "AAAAAA=="},
        context={
            "has_streaming_input": True,
            "checksum": {"request_algorithm": {"in": "header", "name": "x-amz-checksum-crc32"}},
        },
    ),
    "an unsigned payload": _request(
        "PUT",
        "https://s3.example.com/b/k",
        body=BODY,
        headers={"Content-MD5": "x"},
        context={"has_streaming_input": True},
    ),
}


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize("case", list(CASES))
def test_signs_as_botocore_does(frozen_clock: None, case: str, token: str | None) -> None:
    credentials = BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    signed = []
    for signer in (botocore.auth.S3SigV4Auth, LeanS3SigV4Auth):
        request = CASES[case]
        copy = _request(
            request.method,
            request.url,
            headers=dict(request.headers.items()),
            params=dict(request.params),
            body=request.data,
            context=dict(request.context),
        )
        if signer is botocore.auth.S3SigV4Auth and KNOWN_PAYLOAD in copy.context:
            copy.headers["X-Amz-Content-SHA256"] = copy.context[KNOWN_PAYLOAD]
            copy.context["payload_signing_enabled"] = True
            botocore_signer = _KnownHashBotocore(credentials, "s3", "eu-west-3")
            botocore_signer.add_auth(copy)
        else:
            signer(credentials, "s3", "eu-west-3").add_auth(copy)
        signed.append(dict(copy.headers.items()))
    assert signed[1] == signed[0]
    assert signed[1]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")


class _KnownHashBotocore(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """botocore's signer told the payload hash (what dropbeard's takes from the context)."""

    def payload(self, request: Any) -> str:
        return str(request.context[KNOWN_PAYLOAD])


def test_the_signing_key_is_derived_once_per_day(frozen_clock: None) -> None:
    s3sigv4._signing_key.cache_clear()
    credentials = BotoCredentials("AKID", "secret")
    for _ in range(5):
        LeanS3SigV4Auth(credentials, "s3", "us-east-1").add_auth(_request("GET", "http://h:1/b/k"))
    assert s3sigv4._signing_key.cache_info().misses == 1


def _store(seaweed: Seaweed, secret: str) -> S3Store:
    return S3Store(
        seaweed.bucket,
        f"sig-{uuid.uuid4().hex[:12]}",
        endpoint_url=seaweed.endpoint,
        addressing_style="path",
        credentials=Credentials(seaweed.access_key, secret),
    )


@pytest.mark.anyio
@pytest.mark.s3
async def test_a_server_that_checks_signatures_accepts_every_kind_of_request(
    seaweed: Seaweed,
) -> None:
    store = _store(seaweed, seaweed.secret_key)
    keys = ["plain", "a b/c d", "été/ünï", "r+s&t=u~v;w,x'y(z)!*", "%41 literal percent"]
    try:
        for key in keys:
            sha = hashlib.sha256(key.encode()).hexdigest()
            await store.put_if_absent(key, key.encode(), sha256=sha)
            assert await store.get(key) == key.encode()
            assert (await store.head(key)).size == len(key.encode())
        pages = [page async for page in store.list("", start_after="o")]
        listed = {o.key for page in pages for o in page.objects}
        assert listed == {"plain", "r+s&t=u~v;w,x'y(z)!*", "été/ünï"}
        await store.delete("plain")
        with pytest.raises(NotFound):
            await store.head("plain")
    finally:
        await store.aclose()


@pytest.mark.anyio
@pytest.mark.s3
async def test_a_wrong_secret_is_refused(seaweed: Seaweed) -> None:
    store = _store(seaweed, seaweed.secret_key + "x")
    try:
        with pytest.raises(Unauthorized):
            await store.put("k", b"x")
        with pytest.raises(Unauthorized):
            await store.get("k")
    finally:
        await store.aclose()
