"""SigV4 signatures of S3 requests, as botocore computes them (IO-free; no botocore: a
command whose requests are all stamped from known shapes never imports it).

`authorization` is the `Authorization` header of a request given its canonical parts;
the signing key is derived once per secret, day, region and service (four HMACs).
tests/test_store_s3_signer.py checks it against botocore's own signer, and
EXCLUDED_HEADERS and `signed_host` against botocore's.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from hashlib import sha256
from urllib.parse import urlsplit

import msgspec

#: Request parameter (popped before validation) carrying the body's known SHA-256 (hex).
PAYLOAD_SHA256 = "DropbeardPayloadSha256"
#: Headers SigV4 never signs (lower case): botocore's SIGNED_HEADERS_BLACKLIST.
EXCLUDED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def authorization(
    target: tuple[str, str, str],
    headers: dict[str, str],
    payload: str,
    timestamp: str,
    credentials: tuple[str, str],
    scope: tuple[str, str],
) -> str:
    """The SigV4 `Authorization` header of a request to `target` (method, canonical path,
    canonical query) with `headers` (lower-cased name -> value: every header signed,
    `host` included) and payload hash `payload`, at `timestamp` (`YYYYMMDDTHHMMSSZ`),
    for `credentials` (access key, secret) in `scope` (region, service)."""
    method, path, query = target
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join(
        (
            method,
            path,
            query,
            "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names),
            signed,
            payload,
        )
    )
    day = timestamp[:8]
    region, service = scope
    scoped = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", timestamp, scoped, sha256(canonical.encode()).hexdigest())
    )
    access_key, secret = credentials
    mac = _signing_key(secret, day, region, service).copy()
    mac.update(to_sign.encode())
    signature = mac.hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scoped}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


class Credentials(msgspec.Struct, frozen=True):
    """S3 keys: given (config, `DROPBEAR_S3_*`) or from the environment."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print secrets, even in a traceback's locals
        return f"Credentials(access_key_id={self.access_key_id[:4]}…)"

    # as the signer reads credentials (botocore's frozen credentials' names)
    @property
    def access_key(self) -> str:
        return self.access_key_id

    @property
    def secret_key(self) -> str:
        return self.secret_access_key

    @property
    def token(self) -> str | None:
        return self.session_token


@lru_cache(maxsize=16)
def signed_host(scheme: str, netloc: str) -> str:
    """The `host` header botocore signs for URLs on `scheme://netloc`: lower case, no
    user info, the default port left out, an IPv6 address in brackets."""
    url = urlsplit(f"{scheme}://{netloc}/")
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if url.port is not None and url.port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{url.port}"
    return host


@lru_cache(maxsize=16)
def _signing_key(secret: str, day: str, region: str, service: str) -> hmac.HMAC:
    """The HMAC keyed with the signing key of `secret` on `day` in `region` for
    `service` (four HMACs), ready to be copied for each signature: a copy costs less than
    half of a new HMAC of the same key."""
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), sha256).digest()
    return hmac.new(key, digestmod=sha256)


__all__ = ["EXCLUDED_HEADERS", "PAYLOAD_SHA256", "Credentials", "authorization", "signed_host"]
