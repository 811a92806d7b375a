"""The S3 requests dropbeard makes by the thousand, GET, HEAD and PUT of one object, sent
without botocore's per-request machinery once botocore has shown what they look like (IO:
sends through the client's own HTTP session).

botocore builds each request through ~10 events to ~25 handlers, a serializer, an endpoint
resolver, a retry context and a response parser: for a small object that costs about
twice the CPU of the HTTP exchange itself. Yet from one GET (HEAD, PUT) of an object to
the next only the key, the date, the payload hash, the conditions and the signature
change. So the first two requests of each kind go through botocore and is watched on its
way out (`before-send`); its URL up to the key and its other headers become that kind's
`Shape`. A shape is kept only if stamping that very request from it gives back exactly
what botocore sent, URL, headers and signature, and the next request of that kind shows
the same shape (so a header that changes per request is not frozen); otherwise every
request of that kind stays with botocore (`dropbeard.store.s3shapes`, which also keeps
the others of a kind waiting while two are learning). Later requests are stamped from
the shape, signed by the same SigV4 code (`dropbeard.store.s3signer.authorization`), and
sent over dropbeard's own connections (`dropbeard.store.s3wire`), or, where a proxy is
set, through the client's aiohttp session (`dropbeard.store.s3route`).

A 2xx answer is read directly. An error is parsed by botocore's own parser into the
`ClientError` botocore raises (so `dropbeard.store.s3errors.translate` sees no
difference); a redirect or a 400 (a bucket in another region, a signature scope to
correct) forgets the shape and sends the request again through botocore.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlsplit

import msgspec
from aiobotocore.credentials import AioCredentials
from aiobotocore.endpoint import convert_to_response_dict

from dropbeard.store.s3requests import PAYLOAD_SHA256, parse_timestamp
from dropbeard.store.s3route import Answer, Consume, Route, route_for, send_plainly
from dropbeard.store.s3shapes import Shapes
from dropbeard.store.s3signer import EXCLUDED_HEADERS, authorization, signed_host
from dropbeard.store.s3wire import Wire, wire_for

T = TypeVar("T")

#: Operation -> its HTTP method and the client's method for it.
METHODS = {"GetObject": "GET", "HeadObject": "HEAD", "PutObject": "PUT"}
_CLIENT_METHODS = {
    "GetObject": "get_object",
    "HeadObject": "head_object",
    "PutObject": "put_object",
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
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#: Answers that mean botocore has something to learn (a region, a redirect).
_RELEARN = frozenset({301, 302, 307, 400})


class ObjectReply(msgspec.Struct, frozen=True):
    """What dropbeard reads from a GET, HEAD or PUT of one object."""

    etag: str
    size: int
    last_modified: datetime | None = None
    body: bytes = b""


def _reply(headers: Any, body: bytes) -> ObjectReply:
    """The reply a successful answer's headers (and body) make."""
    modified = headers.get("last-modified")
    return ObjectReply(
        headers.get("etag", ""),
        int(headers.get("content-length", len(body))),
        parse_timestamp(modified) if modified else None,
        body,
    )


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
    ) -> tuple[str, dict[str, str]]:
        """The URL and headers of a request for `s3_key` with payload hash `payload`."""
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
            (self.method, self.path_prefix + tail, ""),
            signed,
            payload,
            timestamp,
            (credentials.access_key, credentials.secret_key),
            self.scope,
        )
        if length is not None:
            headers["Content-Length"] = str(length)
        return self.url_prefix + tail, headers


class _Lesson(msgspec.Struct):
    """A request botocore is about to make, watched to learn its shape."""

    operation: str
    s3_key: str
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
    if (
        sent.method != METHODS[lesson.operation]
        or url.query
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
        url_prefix=sent.url[: len(sent.url) - len(tail)],
        path_prefix=url.path[: len(url.path) - len(tail)],
        host=signed_host(url.scheme, url.netloc),
        fixed=tuple((k, v) for k, v in headers.items() if k.lower() not in _PER_REQUEST),
        scope=(scope[2], scope[3]),
    )
    payload = lowered.get("x-amz-content-sha256", "")
    again = shape.stamp(
        lesson.s3_key, payload, conditions, lowered["x-amz-date"], credentials, length
    )
    same = again[0] == sent.url and {k.lower(): v for k, v in again[1].items()} == lowered
    return shape if same else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_SECOND: list[Any] = [None, ""]  # the last second stamped, and its SigV4 timestamp


def _timestamp() -> str:
    """The SigV4 timestamp of now (`YYYYMMDDTHHMMSSZ`), formatted once per second."""
    now = int(time.time())
    if now != _SECOND[0]:
        _SECOND[:] = [now, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))]
    return str(_SECOND[1])


class ObjectRequests:
    """GET, HEAD and PUT of single objects through `client` (an aiobotocore S3 client on
    which `streamline` ran), by shape once one is known, else through botocore."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._shapes: Shapes[Shape] = Shapes()
        self._routes: dict[str, Route | Wire | None] = {}  # by URL prefix
        self._fixed: Any = None  # credentials that never change, frozen
        client.meta.events.register("before-send.s3", _watch)

    def close(self) -> None:
        """Close the connections of our own (aiohttp's close with the client)."""
        for route in self._routes.values():
            if isinstance(route, Wire):
                route.close()

    async def get(self, bucket: str, s3_key: str, **conditions: str) -> ObjectReply:
        return await self._call("GetObject", bucket, s3_key, conditions)

    async def get_streamed(
        self, bucket: str, s3_key: str, consume: Callable[[ObjectReply, Any], Awaitable[T]]
    ) -> T:
        """GET an object and hand its reply (no body) and its body's stream (aiohttp's, or
        botocore's StreamingBody) to `consume`, while the response is open: what it
        returns. Stamped from the GET shape once one is known (a large file's chunks cost
        what a small file's GET costs), else through botocore."""
        shape = self._shapes.get("GetObject")
        if shape is not None:

            async def taken(response: Any) -> T:
                return await consume(_reply(response.headers, b""), response.content)

            answer = await self._stamped(shape, "GetObject", s3_key, {}, None, None, taken)
            if answer is not None:
                return cast(T, answer.consumed)
            self._shapes.pop("GetObject", None)  # something to learn: botocore again
        resp = await self._client.get_object(Bucket=bucket, Key=s3_key)
        reply = ObjectReply(
            str(resp.get("ETag", "")), int(resp.get("ContentLength", 0)), resp.get("LastModified")
        )
        async with resp["Body"] as body:
            return await consume(reply, body)

    async def head(self, bucket: str, s3_key: str) -> ObjectReply:
        return await self._call("HeadObject", bucket, s3_key, {})

    async def put(
        self, bucket: str, s3_key: str, data: bytes, sha256: str | None, **conditions: str
    ) -> ObjectReply:
        return await self._call("PutObject", bucket, s3_key, conditions, data, sha256)

    async def _call(
        self,
        operation: str,
        bucket: str,
        s3_key: str,
        conditions: dict[str, str],
        body: bytes | None = None,
        sha256: str | None = None,
    ) -> ObjectReply:
        learnable = body is None or sha256 is not None
        if learnable:
            shape = await self._shapes.wanted(operation)
            if shape is not None:
                answer = await self._stamped(shape, operation, s3_key, conditions, body, sha256)
                if answer is not None:
                    return _reply(answer.headers, answer.body)
                self._shapes.pop(operation, None)  # something to learn: botocore again
        if not learnable or operation in self._shapes:
            return await self._through_botocore(operation, bucket, s3_key, conditions, body, sha256)
        with self._shapes.learning(operation):
            return await self._through_botocore(operation, bucket, s3_key, conditions, body, sha256)

    async def _through_botocore(
        self,
        operation: str,
        bucket: str,
        s3_key: str,
        conditions: dict[str, str],
        body: bytes | None,
        sha256: str | None,
    ) -> ObjectReply:
        params: dict[str, Any] = {"Bucket": bucket, "Key": s3_key, **conditions}
        if body is not None:
            params["Body"] = body
            if sha256 is not None:
                params[PAYLOAD_SHA256] = sha256
        lesson = _Lesson(operation, s3_key) if operation not in self._shapes else None
        token = _WATCHED.set(lesson)
        try:
            resp = await getattr(self._client, _CLIENT_METHODS[operation])(**params)
        finally:
            _WATCHED.reset(token)
        if lesson is not None and (body is None or sha256 is not None):
            credentials = await self._credentials()
            length = None if body is None else len(body)
            self._shapes.learned(operation, learn(lesson, conditions, credentials, length))
        data = b""
        if "Body" in resp:
            async with resp["Body"] as stream:
                data = await stream.read()
        return ObjectReply(
            str(resp.get("ETag", "")),
            int(resp.get("ContentLength", len(data))),
            resp.get("LastModified"),
            data,
        )

    async def _credentials(self) -> Any:
        """The credentials to sign with now; fixed ones are frozen once, refreshable ones
        (a role, SSO) asked every time, as botocore asks them."""
        if self._fixed is not None:
            return self._fixed
        signer = getattr(self._client, "_request_signer", None)
        source = getattr(signer, "_credentials", None)
        if source is None:
            return None
        frozen = await source.get_frozen_credentials()
        if type(source) is AioCredentials:
            self._fixed = frozen
        return frozen

    async def _stamped(
        self,
        shape: Shape,
        operation: str,
        s3_key: str,
        conditions: dict[str, str],
        body: bytes | None,
        sha256: str | None,
        consume: Consume | None = None,
    ) -> Answer | None:
        """A stamped request's successful answer (see `Route.send` for `consume`); None
        if botocore should make it instead; a ClientError as botocore raises it."""
        credentials = await self._credentials()
        if credentials is None:
            return None
        payload = sha256 if body is not None and sha256 is not None else _EMPTY_SHA256
        length = None if body is None else len(body)
        url, headers = shape.stamp(s3_key, payload, conditions, _timestamp(), credentials, length)
        http_session = self._client._endpoint.http_session
        if shape.url_prefix not in self._routes:
            found = await route_for(http_session, shape.url_prefix)
            wire = None if found is None else wire_for(found, shape.url_prefix)
            self._routes[shape.url_prefix] = wire or found
        route = self._routes[shape.url_prefix]
        if route is not None:
            answer = await route.send(shape.method, url, headers, body, consume)
        elif consume is not None:
            return None  # streamed only through a route: botocore streams the rest
        else:
            answer = await send_plainly(http_session, shape.method, url, headers, body)
        if answer.status in _RELEARN:
            return None
        if answer.status >= 300:
            await self._raise_error(operation, answer.response)
        return answer

    async def _raise_error(self, operation: str, response: Any) -> None:
        """Raise the ClientError botocore raises for this error response."""
        model = self._client.meta.service_model.operation_model(operation)
        response_dict = await convert_to_response_dict(response, model)
        factory = self._client._endpoint._response_parser_factory
        parser = factory.create_parser(model.service_model.resolved_protocol)
        parsed = await parser.parse(response_dict, model.output_shape)
        code = parsed.get("Error", {}).get("Code")
        raise self._client.exceptions.from_code(code)(parsed, operation)
