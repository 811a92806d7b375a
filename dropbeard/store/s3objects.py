"""The S3 requests dropbeard makes by the thousand, GET, HEAD, PUT and DELETE of one
object and a page of a listing, sent without botocore's per-request machinery once
botocore has shown what they look like (IO: sends through its own connections, or the
client's HTTP session).

botocore builds each request through ~10 events to ~25 handlers, a serializer, an endpoint
resolver, a retry context and a response parser: for a small object that costs about
twice the CPU of the HTTP exchange itself. Yet from one GET (HEAD, PUT...) of an object to
the next only the key, the date, the payload hash, the conditions and the signature
change (and for a listing, its query). So the first two requests of each kind go through
botocore and are watched on their way out (`before-send`); the URL up to the key (or the
query) and the other headers become that kind's `Shape`. A shape is kept only if stamping
that very request from it gives back exactly what botocore sent, URL, headers and
signature, and the next request of that kind shows the same shape (so a header that
changes per request is not frozen); otherwise every request of that kind stays with
botocore (`dropbeard.store.s3shapes`, which also keeps the others of a kind waiting while
two are learning). Later requests are stamped from the shape, signed by the same SigV4
code (`dropbeard.store.s3sigv4.authorization`), and sent over dropbeard's own connections
(`dropbeard.store.s3wire`), or, where a proxy is set, through the client's aiohttp
session (`dropbeard.store.s3route`).

Shapes learnt by an earlier process can be handed in (`known`, and those it saw once,
`seen`; from `dropbeard.store.s3shapecache`), with `Direct` settings to sign and send without a
client: then botocore is not even imported until a request needs it. Such a shape is
provisional until an answer confirms it: a redirect, a 400, a 403 or a missing bucket
before then forgets every provisional shape and sends the request through botocore,
which learns them anew.

A 2xx answer is read directly; an error answer becomes a `ServerError` carrying its S3
code and status as botocore's `ClientError` does (`dropbeard.store.s3errors.translate`
reads both alike); a redirect or a 400 (a bucket in another region, a signature scope to
correct) forgets the shape and sends the request again through botocore.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import msgspec

from dropbeard.core.errors import ListFailed
from dropbeard.store.s3answers import (
    Listed,
    ListingPage,
    MalformedAnswer,
    authenticated,
    parse_error,
    parse_listing,
    parse_timestamp,
)
from dropbeard.store.s3errors import ServerError
from dropbeard.store.s3route import Answer, Consume, Route, route_for, send_plainly
from dropbeard.store.s3shape import (
    _WATCHED,
    CONDITIONS,
    LISTING,
    METHODS,
    Shape,
    _length,
    _Lesson,
    _timestamp,
    _watch,
    learn,
    listing_query,
)
from dropbeard.store.s3shapes import Shapes
from dropbeard.store.s3sigv4 import (
    PAYLOAD_SHA256,
    Credentials,
)
from dropbeard.store.s3wire import FIRST_SPARES, Wire, default_tls, wire_for

T = TypeVar("T")

#: Operation -> the client's method for it.
_CLIENT_METHODS = {
    "GetObject": "get_object",
    "HeadObject": "head_object",
    "PutObject": "put_object",
    "DeleteObject": "delete_object",
    LISTING: "list_objects_v2",
}
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#: Answers that mean botocore has something to learn (a region, a redirect).
_RELEARN = frozenset({301, 302, 307, 400})


class ObjectReply(msgspec.Struct, frozen=True):
    """What dropbeard reads from a GET, HEAD or PUT of one object. `last_modified` is
    kept as the answer's header gave it, or as botocore parsed it: `modified()` parses
    it when asked (a blob's GET, nearly every request of a download, never is)."""

    etag: str
    size: int
    last_modified: datetime | str | None = None
    body: bytes = b""

    def modified(self) -> datetime | None:
        """When the object was last written, as the server said."""
        when = self.last_modified
        return parse_timestamp(when) if isinstance(when, str) else when


def _reply(headers: Any, body: bytes) -> ObjectReply:
    """The reply a successful answer's headers (and body) make."""
    return ObjectReply(
        headers.get("etag", ""),
        int(headers.get("content-length", len(body))),
        headers.get("last-modified") or None,
        body,
    )


class Direct(msgspec.Struct, frozen=True):
    """What stamped requests need to go out before (or without) a client: fixed
    credentials, and the client's settings for the connections of a `Wire` (no proxy;
    over https, verified as botocore verifies by default: `s3wire.default_tls`)."""

    credentials: Credentials
    connect_timeout: float | None
    read_timeout: float | None
    limit: int


class ObjectRequests:
    """GET, HEAD, PUT and DELETE of single objects, and listing pages, by shape once one
    is known, else through botocore: the aiobotocore client (on which `streamline` ran)
    that `open_client` opens, and hands back through `attach`. `known` shapes (learnt by
    an earlier process) are provisional; with `direct`, requests are stamped from them
    without opening the client at all."""

    def __init__(
        self,
        open_client: Callable[[], Awaitable[Any]],
        *,
        known: dict[str, Shape] | None = None,
        seen: dict[str, Shape] | None = None,
        direct: Direct | None = None,
    ) -> None:
        self._open_client = open_client
        self._client: Any = None
        self._shapes: Shapes[Shape] = Shapes(Shape.alike)
        self._routes: dict[str, Route | Wire | None] = {}  # by URL prefix
        self._fixed: Any = None  # credentials that never change, frozen
        self._direct = direct
        self._tls_refused = False  # our https connections failed where botocore's may not
        self._provisional: set[str] = set()
        for operation, shape in (known or {}).items():
            if operation in METHODS:
                self._shapes[operation] = shape
                self._provisional.add(operation)
        for operation, shape in (seen or {}).items():
            if operation in METHODS:
                self._shapes.seen(operation, shape)

    def attach(self, client: Any) -> None:
        """The client `open_client` opened: watched from now on, for shapes to learn."""
        client.meta.events.register("before-send.s3", _watch)
        self._client = client

    async def _botocore(self) -> Any:
        if self._client is None:
            await self._open_client()  # which attaches it
        return self._client

    def learnt(self) -> tuple[dict[str, Shape], dict[str, Shape]]:
        """The shapes known (learnt, or kept and not refuted), by kind; and those botocore
        showed once, waiting to be seen again (a kind a command makes one
        request of, such as the DELETE of `init`'s probe, settles over two commands)."""
        known = {op: shape for op, shape in self._shapes.items() if shape is not None}
        return known, self._shapes.candidates

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
            self._forget("GetObject")  # something to learn: botocore again
        client = await self._botocore()
        resp = await client.get_object(Bucket=bucket, Key=s3_key)
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

    async def delete(self, bucket: str, s3_key: str) -> None:
        await self._call("DeleteObject", bucket, s3_key, {})

    async def list_page(self, bucket: str, params: dict[str, Any]) -> ListingPage:
        """One page of a ListObjectsV2 listing of `bucket` with `params` (botocore's
        names: Prefix, Delimiter, MaxKeys, StartAfter, ContinuationToken)."""
        query = listing_query(params)
        shape = await self._shapes.wanted(LISTING)
        if shape is not None:
            answer = await self._stamped(shape, LISTING, "", {}, None, None, query=query)
            if answer is not None:
                try:
                    return parse_listing(answer.body)
                except MalformedAnswer as exc:
                    where = params.get("Prefix") or "/"
                    raise ListFailed(f"listing {where}: {exc}", where) from None
            self._forget(LISTING)
        call = {"Bucket": bucket, **params}
        if LISTING in self._shapes:
            resp = await self._through_botocore(LISTING, call, None)
        else:
            with self._shapes.learning(LISTING):
                resp = await self._through_botocore(LISTING, call, _Lesson(LISTING, "", query))
        return ListingPage(
            [
                Listed(
                    o["Key"], int(o.get("Size", 0)), str(o.get("ETag", "")), o.get("LastModified")
                )
                for o in resp.get("Contents", ())
            ],
            [p["Prefix"] for p in resp.get("CommonPrefixes", ())],
            bool(resp.get("IsTruncated")),
            resp.get("NextContinuationToken") or None,
        )

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
                self._forget(operation)  # something to learn: botocore again
        params: dict[str, Any] = {"Bucket": bucket, "Key": s3_key, **conditions}
        if body is not None:
            params["Body"] = body
            if sha256 is not None:
                params[PAYLOAD_SHA256] = sha256
        if not learnable or operation in self._shapes:
            resp = await self._through_botocore(operation, params, None)
        else:
            with self._shapes.learning(operation):
                resp = await self._through_botocore(operation, params, _Lesson(operation, s3_key))
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

    async def _through_botocore(
        self, operation: str, params: dict[str, Any], lesson: _Lesson | None
    ) -> Any:
        """botocore's response to `operation` with `params`; with a `lesson`, the request
        is watched on its way out and its shape learnt."""
        client = await self._botocore()
        token = _WATCHED.set(lesson)
        try:
            resp = await getattr(client, _CLIENT_METHODS[operation])(**params)
        except Exception as exc:
            if lesson is not None and authenticated(exc):
                await self._learn(operation, params, lesson)
            raise
        finally:
            _WATCHED.reset(token)
        if lesson is not None:
            await self._learn(operation, params, lesson)
        return resp

    async def _learn(self, operation: str, params: dict[str, Any], lesson: _Lesson) -> None:
        credentials = await self._credentials()
        conditions = {k: v for k, v in params.items() if k in CONDITIONS}
        length = _length(operation, params.get("Body"))
        self._shapes.learned(operation, learn(lesson, conditions, credentials, length))

    def _forget(self, operation: str) -> None:
        """Send `operation` through botocore again, to learn its shape anew; if it was
        provisional, so are the other provisional shapes (all learnt alike, and not
        confirmed)."""
        self._shapes.pop(operation, None)
        if operation in self._provisional:
            for other in self._provisional:
                self._shapes.pop(other, None)
            self._provisional.clear()

    async def _credentials(self) -> Any:
        """The credentials to sign with now; fixed ones are frozen once, refreshable ones
        (a role, SSO) asked every time, as botocore asks them."""
        if self._direct is not None:
            return self._direct.credentials
        if self._fixed is not None:
            return self._fixed
        client = await self._botocore()
        signer = getattr(client, "_request_signer", None)
        source = getattr(signer, "_credentials", None)
        if source is None:
            return None
        frozen = await source.get_frozen_credentials()
        from aiobotocore.credentials import AioCredentials

        if type(source) is AioCredentials:
            self._fixed = frozen
        return frozen

    async def _route(self, url_prefix: str) -> Route | Wire | None:
        """How requests to `url_prefix` go: through the client's HTTP session's route
        (its proxy, TLS and pool settings) once a client is open, else over connections
        of our own with `direct`'s settings, https verified as botocore's default would
        (`default_tls`) unless that was refused (None: botocore sends them).
        One route per origin: a listing's URL and an object's share their connections."""
        parts = urlsplit(url_prefix)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin in self._routes:
            return self._routes[origin]
        scheme = parts.scheme.lower()
        if self._client is None and self._direct is not None:
            if scheme == "http" or (scheme == "https" and not self._tls_refused):
                tls = await anyio.to_thread.run_sync(default_tls) if scheme == "https" else None
                if origin in self._routes:  # made by another request meanwhile
                    return self._routes[origin]
                wire = Wire(
                    origin,
                    tls=tls,
                    connect_timeout=self._direct.connect_timeout,
                    read_timeout=self._direct.read_timeout,
                    limit=self._direct.limit,
                    first_spares=FIRST_SPARES,
                )
                self._routes[origin] = wire
                return wire
            await self._botocore()
        http_session = self._client._endpoint.http_session
        found = await route_for(http_session, origin + "/")
        route = self._routes[origin] = (None if found is None else wire_for(found, origin)) or found
        return route

    async def _stamped(
        self,
        shape: Shape,
        operation: str,
        s3_key: str,
        conditions: dict[str, str],
        body: bytes | None,
        sha256: str | None,
        consume: Consume | None = None,
        query: str = "",
    ) -> Answer | None:
        """A stamped request's successful answer (see `Route.send` for `consume`); None
        if botocore should make it instead; a ServerError for an error answer."""
        credentials = await self._credentials()
        if credentials is None:
            return None
        payload = sha256 if body is not None and sha256 is not None else _EMPTY_SHA256
        length = _length(operation, body)
        url, headers = shape.stamp(
            s3_key, payload, conditions, _timestamp(), credentials, length, query
        )
        route = await self._route(shape.url_prefix)
        if route is not None:
            try:
                answer = await route.send(shape.method, url, headers, body, consume)
            except ssl.SSLError:
                if self._client is not None or not isinstance(route, Wire):
                    raise
                # Our own TLS context, built as botocore's would be, is refused (a CA
                # only botocore knows of): botocore sends it, and the rest, from now on.
                self._tls_refused = True
                self._routes.clear()
                route.close()
                return None
        elif consume is not None:
            return None  # streamed only through a route: botocore streams the rest
        else:
            client = await self._botocore()
            answer = await send_plainly(
                client._endpoint.http_session, shape.method, url, headers, body
            )
        if answer.status in _RELEARN:
            return None
        problem = parse_error(answer.status, answer.body) if answer.status >= 300 else None
        if self._provisional:
            if problem is not None and (
                answer.status in (401, 403) or problem.code == "NoSuchBucket"
            ):
                return None  # perhaps not what botocore would send today: ask it
            self._provisional.clear()  # the server took a request stamped from them
        if problem is not None:
            raise ServerError(problem.code, problem.message, problem.status)
        return answer
