"""A kind of S3 request as botocore sends it, and stamping more of that kind from it
(IO-free): a `Shape` is learnt from one request botocore built (`learn`, given what
`_watch` saw leave on `before-send`), kept only if stamping that very request back gives
exactly what botocore sent, and then stamps a request for any key (or, for a listing,
any query) with the date, payload hash, conditions and signature of its own
(`dropbeard.store.s3objects` sends them; `dropbeard.store.s3shapecache` keeps them from
one process to the next).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec

from dropbeard.store.s3sigv4 import EXCLUDED_HEADERS, authorization, signed_host

#: Operation -> its HTTP method.
LISTING = "ListObjectsV2"
METHODS = {
    "GetObject": "GET",
    "HeadObject": "HEAD",
    "PutObject": "PUT",
    "DeleteObject": "DELETE",
    LISTING: "GET",
}
#: A listing's parameters, and their names in its query.
_LISTING_QUERY = {
    "Delimiter": "delimiter",
    "MaxKeys": "max-keys",
    "Prefix": "prefix",
    "ContinuationToken": "continuation-token",
    "StartAfter": "start-after",
}
#: Headers that differ per request: stamped, never taken from the shape.
_PER_REQUEST = frozenset(
    {
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
        "content-length",
        "if-none-match",
        "if-match",
    }
)
#: Conditions as botocore names the parameter and spells the header.
CONDITIONS = {"IfNoneMatch": "If-None-Match", "IfMatch": "If-Match"}


class Shape(msgspec.Struct, frozen=True):
    """One kind of request (GET, HEAD or PUT of an object) as botocore sent it, minus
    what changes per request: stamped into a URL and headers by `stamp`."""

    method: str
    url_prefix: str  # the URL up to the object key's encoding
    path_prefix: str  # the URL's path up to it: the start of the canonical URI
    host: str  # the `host` botocore signed
    fixed: tuple[tuple[str, str], ...]  # headers sent as they are (User-Agent...)
    scope: tuple[str, str]  # the signature's region and service

    def stamp(
        self,
        s3_key: str,
        payload: str,
        conditions: dict[str, str],
        timestamp: str,
        credentials: Any,
        length: int | None,
        query: str = "",
    ) -> tuple[str, dict[str, str]]:
        """The URL and headers of a request for `s3_key` (with `query`, already encoded)
        with payload hash `payload`."""
        tail = quote(s3_key.encode(), safe="/~")  # as botocore encodes a greedy label
        headers = dict(self.fixed)
        signed = {"host": self.host}
        for name, value in self.fixed:
            if name.lower() not in EXCLUDED_HEADERS:
                signed[name.lower()] = value
        for param, value in conditions.items():
            headers[CONDITIONS[param]] = value
            signed[CONDITIONS[param].lower()] = value
        headers["X-Amz-Date"] = signed["x-amz-date"] = timestamp
        headers["X-Amz-Content-SHA256"] = signed["x-amz-content-sha256"] = payload
        if credentials.token:
            headers["X-Amz-Security-Token"] = signed["x-amz-security-token"] = credentials.token
        headers["Authorization"] = authorization(
            (self.method, self.path_prefix + tail, _canonical_query(query)),
            signed,
            payload,
            timestamp,
            (credentials.access_key, credentials.secret_key),
            self.scope,
        )
        if length is not None:
            headers["Content-Length"] = str(length)
        return self.url_prefix + tail + (f"?{query}" if query else ""), headers

    def alike(self, other: Shape) -> bool:
        """Whether `other` is this shape, but for the values of headers that are not
        signed: botocore's User-Agent names the features a process has used so far
        (`m/...`), so two processes may send two; either does."""
        return msgspec.structs.replace(self, fixed=_signed(self.fixed)) == msgspec.structs.replace(
            other, fixed=_signed(other.fixed)
        )


def _signed(fixed: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((k, "" if k.lower() in EXCLUDED_HEADERS else v) for k, v in fixed)


def listing_query(params: dict[str, Any]) -> str:
    """The query of a ListObjectsV2 request with `params` (botocore's names), encoded
    as botocore encodes it: in their order, after the model's `list-type=2`, and the
    url-encoding of keys botocore asks for last."""
    pairs = ["list-type=2"]
    for param, value in params.items():
        pairs.append(f"{_LISTING_QUERY[param]}={quote(str(value), safe='-_.~')}")
    pairs.append("encoding-type=url")
    return "&".join(pairs)


def _canonical_query(query: str) -> str:
    """SigV4's canonical form of an encoded query: its pairs sorted."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{name}={value}" for name, value in pairs)


class _Lesson(msgspec.Struct):
    """A request botocore is about to make, watched to learn its shape."""

    operation: str
    s3_key: str
    query: str = ""  # a listing's, as `listing_query` encodes it
    sent: Any = None  # the AWSPreparedRequest, once botocore sends it


_WATCHED: ContextVar[_Lesson | None] = ContextVar("dropbeard_s3_lesson", default=None)


def _watch(request: Any, **_: Any) -> None:
    """before-send: hand the request to the lesson of the task sending it, if any (the
    last one sent is the one answered: botocore may resend after a redirect)."""
    lesson = _WATCHED.get()
    if lesson is not None:
        lesson.sent = request


def learn(
    lesson: _Lesson, conditions: dict[str, str], credentials: Any, length: int | None
) -> Shape | None:
    """The shape of the request `lesson` saw, if stamping it back gives exactly what
    botocore sent; else None."""
    sent = lesson.sent
    if sent is None or credentials is None:
        return None
    headers = {str(k): _text(v) for k, v in sent.headers.items()}
    lowered = {k.lower(): v for k, v in headers.items()}
    auth, url = lowered.get("authorization", ""), urlsplit(sent.url)
    tail = quote(lesson.s3_key.encode(), safe="/~")
    base = sent.url.partition("?")[0]
    if (
        sent.method != METHODS[lesson.operation]
        or url.query != lesson.query
        or url.fragment
        or not url.path.endswith(tail)
        or not auth.startswith("AWS4-HMAC-SHA256 Credential=")
        or "x-amz-date" not in lowered
    ):
        return None
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    if len(scope) != 5:
        return None
    shape = Shape(
        method=sent.method,
        url_prefix=base[: len(base) - len(tail)],
        path_prefix=url.path[: len(url.path) - len(tail)],
        host=signed_host(url.scheme, url.netloc),
        fixed=tuple((k, v) for k, v in headers.items() if k.lower() not in _PER_REQUEST),
        scope=(scope[2], scope[3]),
    )
    payload = lowered.get("x-amz-content-sha256", "")
    again = shape.stamp(
        lesson.s3_key, payload, conditions, lowered["x-amz-date"], credentials, length, lesson.query
    )
    same = again[0] == sent.url and {k.lower(): v for k, v in again[1].items()} == lowered
    return shape if same else None


def _length(operation: str, body: bytes | None) -> int | None:
    """The Content-Length botocore sends with a request: its body's, and 0 for a DELETE
    (a request with a method that may carry a body, but none)."""
    if body is not None:
        return len(body)
    return 0 if operation == "DeleteObject" else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_SECOND: list[Any] = [None, ""]  # the last second stamped, and its SigV4 timestamp


def _timestamp() -> str:
    """The SigV4 timestamp of now (`YYYYMMDDTHHMMSSZ`), formatted once per second."""
    now = int(time.time())
    if now != _SECOND[0]:
        _SECOND[:] = [now, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))]
    return str(_SECOND[1])
