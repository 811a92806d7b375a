"""Classification of S3 client errors into dropbeard's typed store errors (IO-free).

The one place that decides what is transient (retried by `RetryingStore`), what is an
auth failure (exit 9), and what is permanent. Messages name the operation and the key
and never include credentials or request signatures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import msgspec
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

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
    except ClientError as exc:
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
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise Unauthorized(
            f"{doing} {key}: no usable S3 credentials found ({type(exc).__name__}); set "
            "DROPBEAR_S3_ACCESS_KEY_ID/DROPBEAR_S3_SECRET_ACCESS_KEY or an AWS profile",
            key,
        ) from None
    except ProfileNotFound as exc:
        raise StoreError(f"{doing} {key}: {exc}", key) from None
    except (
        BotoConnectionError,
        HTTPClientError,
        ReadTimeoutError,
        aiohttp.ClientError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise Unavailable(f"{doing} {key}: server unreachable ({_reason(exc)})", key) from None
    except BotoCoreError as exc:
        raise StoreError(f"{doing} {key}: {_reason(exc)}", key) from None
    except OSError as exc:
        raise Unavailable(f"{doing} {key}: {_reason(exc)}", key) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
