"""Classification of S3 client errors into dropbeard's typed store errors (IO-free).

The one place that decides what is transient (retried by `RetryingStore`), what is an
auth failure (exit 9), and what is permanent. Messages name the operation and the key
and never include credentials or request signatures.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from dropbeard.core.errors import (
    ListFailed,
    MissingBucket,
    NotFound,
    PreconditionFailed,
    StoreError,
    Unauthorized,
    Unavailable,
)

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}
_PRECONDITION = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}
_AUTH = {
    "401",
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AllAccessDisabled",
}
_TRANSIENT = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "RequestLimitExceeded",
    "TooManyRequests",
    "429",
    "BandwidthLimitExceeded",
    "OperationAborted",
}


class ServerError(Exception):
    """An error answer to a request dropbeard stamped itself (`dropbeard.store.s3objects`):
    its `response` reads as a botocore `ClientError`'s does."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{message or code} ({code}, HTTP {status})")
        self.response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


class Outcome(msgspec.Struct):
    """Filled in by `translate` when a 304 Not Modified was tolerated."""

    not_modified: bool = False


@contextmanager
def translate(
    doing: str, key: str, *, listing: bool = False, not_modified_ok: bool = False
) -> Iterator[Outcome]:
    """Run an S3 call, re-raising any failure as a typed `StoreError`:
    "<doing> <key>: <reason>"."""
    outcome = Outcome()
    try:
        yield outcome
    except StoreError:
        raise
    except Exception as exc:
        _translated(exc, doing, key, listing, not_modified_ok, outcome)


def _translated(
    exc: Exception, doing: str, key: str, listing: bool, not_modified_ok: bool, outcome: Outcome
) -> None:
    """Raise `exc` as the store error it means; return if it is a tolerated 304. botocore's
    and aiohttp's errors are recognised only once they are imported: a command whose
    requests are all stamped never imports them, and so can never see them raised."""
    boto: Any = sys.modules.get("botocore.exceptions")
    aiohttp: Any = sys.modules.get("aiohttp")
    if isinstance(exc, ServerError) or (boto is not None and isinstance(exc, boto.ClientError)):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if not_modified_ok and (code in ("304", "NotModified") or status == 304):
            outcome.not_modified = True
            return
        message = error.get("Message") or code or f"HTTP {status}"
        where = f"{doing} {key}: {message} ({code or status})"
        if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
            raise NotFound(where, key) from None
        if code == "NoSuchBucket":
            raise MissingBucket(f"{doing} {key}: the bucket does not exist", key) from None
        if code in _PRECONDITION or status in (409, 412):
            raise PreconditionFailed(where, key) from None
        if code in _AUTH or status in (401, 403):
            raise Unauthorized(
                f"{doing} {key}: access denied by the server ({code or status}); "
                "check the credentials and the bucket policy",
                key,
            ) from None
        if code == "NotImplemented" or status == 501:  # a feature the server lacks
            raise StoreError(where, key) from None
        if code in _TRANSIENT or (isinstance(status, int) and status >= 500):
            raise Unavailable(where, key) from None
        if listing:
            raise ListFailed(where, key) from None
        raise StoreError(where, key) from None
    if boto is not None:
        if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError)):
            raise Unauthorized(
                f"{doing} {key}: no usable S3 credentials found ({type(exc).__name__}); set "
                "DROPBEAR_S3_ACCESS_KEY_ID/DROPBEAR_S3_SECRET_ACCESS_KEY or an AWS profile",
                key,
            ) from None
        if isinstance(exc, boto.ProfileNotFound):
            raise StoreError(f"{doing} {key}: {exc}", key) from None
    unreachable: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    if boto is not None:
        unreachable += (boto.ConnectionError, boto.HTTPClientError, boto.ReadTimeoutError)
    if aiohttp is not None:
        unreachable += (aiohttp.ClientError,)
    if isinstance(exc, unreachable):
        raise Unavailable(f"{doing} {key}: server unreachable ({_reason(exc)})", key) from None
    if boto is not None and isinstance(exc, boto.BotoCoreError):
        raise StoreError(f"{doing} {key}: {_reason(exc)}", key) from None
    if isinstance(exc, OSError):
        raise Unavailable(f"{doing} {key}: {_reason(exc)}", key) from None
    raise exc


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
