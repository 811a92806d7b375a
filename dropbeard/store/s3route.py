"""How a stamped S3 request (`dropbeard.store.s3objects`) reaches the server: through the
aiohttp session that the client's own HTTP session holds for the URL's proxy (IO:
sends requests).

aiobotocore's `AIOHTTPSession.send` looks the proxy up again for every request (two URL
parses), copies the headers twice and wraps the answer in botocore's case-insensitive
header map; for a small object that is a quarter of the client's CPU. A `Route` looks
the proxy up once per URL prefix and sends through the same aiohttp session (same
connection pool, TLS settings, timeouts; no decompression, `Accept-Encoding: identity`
as aiobotocore sends it). Without the parts of aiobotocore it relies on (another
version, an experimental proxy setting), requests go through `send` as before.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

#: Takes a successful response (its `headers`, and its body's stream as `content`).
Consume = Callable[[Any], Awaitable[Any]]


class Answer(msgspec.Struct, frozen=True):
    """A response: its status, a `get` of its headers by lower-case name, and its body
    (read only for a GET's or a listing's success, or an error)."""

    status: int
    headers: Any
    body: bytes
    #: what a streamed GET's `consume` returned
    consumed: Any = None


class Route(msgspec.Struct, frozen=True):
    """The aiohttp session and proxy settings botocore's HTTP session uses for a prefix."""

    session: Any
    proxy: str | None
    proxy_headers: dict[str, str]

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        consume: Consume | None = None,
    ) -> Answer:
        """The answer to one request. A GET's body is read whole; or, given `consume`,
        a successful GET's headers and body stream go to it, while the response is open,
        and what it returns is the answer's `consumed`."""
        from yarl import URL  # imported with aiohttp, which sent nothing before the client

        headers["Accept-Encoding"] = "identity"
        async with self.session.request(
            method,
            URL(url, encoded=True),
            headers=headers,
            data=body,
            proxy=self.proxy,
            proxy_headers=self.proxy_headers or None,
        ) as response:
            status = response.status
            if status >= 300:
                lowered = {k.decode().lower(): v.decode() for k, v in response.raw_headers}
                return Answer(status, lowered, await response.read())
            if consume is not None:
                return Answer(status, response.headers, b"", await consume(response))
            data = await _whole_body(response.content) if method == "GET" else b""
            return Answer(status, response.headers, data)


async def _whole_body(content: Any) -> bytes:
    """A response's body in one `bytes`, copied once: aiohttp's `read()` joins what is
    buffered at each wake-up, then joins those again (two copies of every byte, on the
    event loop); its pieces taken whole and joined once (a body that came in one piece,
    not at all)."""
    pieces: list[bytes] = []
    while True:
        piece, boundary = await content.readchunk()
        if not piece:
            if boundary:  # the end of an HTTP chunk, not of the body
                continue
            return b"".join(pieces)
        pieces.append(piece)


async def route_for(http_session: Any, url_prefix: str) -> Route | None:
    """The route to `url_prefix` through `http_session` (aiobotocore's AIOHTTPSession);
    None if it lacks what a route needs."""
    config = getattr(http_session, "_proxy_config", None)
    get_session = getattr(http_session, "_get_session", None)
    if config is None or get_session is None:
        return None
    if os.environ.get("BOTO_EXPERIMENTAL__ADD_PROXY_HOST_HEADER", "").lower() == "true":
        return None  # a proxy setting `send` applies per request
    proxy = config.proxy_url_for(url_prefix)
    return Route(await get_session(proxy), proxy, dict(config.proxy_headers_for(url_prefix)))


async def send_plainly(
    http_session: Any, method: str, url: str, headers: dict[str, str], body: bytes | None
) -> Answer:
    """The same request through aiobotocore's `send` (no route)."""
    from botocore.awsrequest import AWSPreparedRequest

    request = AWSPreparedRequest(method, url, headers, body, stream_output=False)
    response = await http_session.send(request)
    return Answer(response.status_code, response.headers, await response.content)
