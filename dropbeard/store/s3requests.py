"""How dropbeard's S3 client makes each request cheaper than botocore's defaults (IO-free:
event handlers, a signer and caches, installed on one client by `streamline`).

- **One round trip per request.** botocore adds `Expect: 100-continue` to every upload
  and then waits a round trip for the server's `100 Continue` before sending the body;
  for small objects that doubles the time of a PUT. Its handler is unregistered.
- **No second hash of the payload.** A SigV4 request carries the SHA-256 of its body in
  `X-Amz-Content-SHA256` (and botocore hashes every body on plain http). A caller that
  already knows the body's SHA-256 (a blob's key is its SHA-256; a part was hashed while
  read) passes it as the request parameter `PAYLOAD_SHA256`; it is taken out of the
  parameters before validation and signed as the payload hash instead of hashing the
  body again on the event loop. A server that checks the hash (AWS does; SeaweedFS 4
  does not) refuses a body damaged on the way.
- **Signed for less** (`dropbeard.store.s3signer`): the same signature, without
  botocore's second pass over the headers or a new signing key per request.
- **Events dispatched for less**: aiobotocore's dispatcher, minus a log call and a
  coroutine per handler call (`_quick_emit`).
- **What does not change between requests is built once**: the User-Agent string (botocore
  rebuilds it, character by character, twice per request), and the endpoint of each
  operation on each bucket (botocore resolves its endpoint rules again per request; they
  depend on the bucket and the client's settings, never on the object key). No
  per-request invocation id (a uuid4 and two headers only AWS's own retry metrics use).
- **Timestamps parsed by their fixed formats** (`parse_timestamp`): botocore hands every
  `Last-Modified` header and listing date to dateutil's general parser, which costs
  ~0.15 ms each, more than the rest of parsing a GET's response.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from botocore.awsrequest import HeadersDict
from botocore.handlers import add_expect_header, add_retry_headers

from dropbeard.store.s3answers import parse_timestamp
from dropbeard.store.s3signer import KNOWN_PAYLOAD, SIGNER_NAME
from dropbeard.store.s3sigv4 import PAYLOAD_SHA256

#: Operations whose body may come with a known hash.
_WITH_BODY = ("PutObject", "UploadPart")
#: Endpoint rule parameters that may differ per request; the rules must not read them.
PER_REQUEST_PARAMETERS = ("Key", "Prefix", "CopySource")


def _take_known_hash(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """before-parameter-build: move PAYLOAD_SHA256 from the parameters to the context."""
    known = params.pop(PAYLOAD_SHA256, None)
    if known is not None:
        context[KNOWN_PAYLOAD] = known


def _choose_lean_signer(context: dict[str, Any], signing_name: str, **_: Any) -> str | None:
    """choose-signer: dropbeard's S3 SigV4 signer for every request botocore would sign
    with plain S3 SigV4 (not S3 Express, SigV4a or an unsigned request)."""
    if signing_name == "s3" and context.get("auth_type") == "v4":
        return SIGNER_NAME
    return None


_SPELLINGS: dict[str, dict[str, str]] = {}


def _spellings(operation_model: Any) -> dict[str, str]:
    """Lower-cased name -> the model's spelling of each header the operation's response
    is parsed for (`ETag`, `Last-Modified`, `x-amz-version-id`...)."""
    names = _SPELLINGS.get(operation_model.name)
    if names is None:
        names = {}
        shape = operation_model.output_shape
        for member_name, member in (shape.members if shape is not None else {}).items():
            if member.serialization.get("location") == "header":
                spelled = member.serialization.get("name", member_name)
                names[spelled.lower()] = spelled
        _SPELLINGS[operation_model.name] = names
    return names


def _plain_headers(response_dict: dict[str, Any], operation_model: Any, **_: Any) -> None:
    """before-parse: the response headers as a plain dict, each named as the parser will
    look it up (the operation model's spelling, else lower case) instead of botocore's
    case-insensitive mapping, whose every lookup costs more than a dict's (a GET's
    response is checked for each of the ~40 headers its model lists)."""
    spelled = _spellings(operation_model)
    plain = {}
    for lower, value in _lowered(response_dict["headers"]):
        plain[spelled.get(lower, lower)] = value
    response_dict["headers"] = plain


def _lowered(headers: Any) -> Iterator[tuple[str, Any]]:
    """(lower-cased name, value) of each header: read from botocore's `HeadersDict`
    storage when it is the one known (its own iteration costs two lookups a header),
    else through the mapping."""
    stored = getattr(headers, "_dict", None)
    if isinstance(headers, HeadersDict) and isinstance(stored, dict):  # keys: _HeaderKey
        return ((key._lower, value) for key, value in stored.items())
    return ((str(name).lower(), value) for name, value in headers.items())


def tune_parsers(session: Any) -> None:
    """Parse the timestamps of every response of clients created by `session` with
    `parse_timestamp` (botocore's documented parser default)."""
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )


def streamline(client: Any) -> None:
    """Install the above on `client` (its own event emitter and resolver: other clients
    keep botocore's defaults)."""
    events = client.meta.events
    events.unregister("before-call.s3", add_expect_header)
    events.unregister("request-created", add_retry_headers)
    user_agent = getattr(client, "_user_agent_creator", None)
    if user_agent is not None:
        events.unregister("request-created.s3", user_agent.rebuild_and_replace_user_agent_handler)
        fixed = str(user_agent.to_string())
        user_agent.to_string = lambda: fixed
    for operation in _WITH_BODY:
        events.register(f"before-parameter-build.s3.{operation}", _take_known_hash)
    events.register_first("choose-signer.s3", _choose_lean_signer)
    events.register("before-parse.s3", _plain_headers)
    resolver = getattr(client, "_ruleset_resolver", None)
    if resolver is not None:
        resolver.construct_endpoint = _endpoints_once(resolver)
    emitter: Any = getattr(events, "_emitter", None)
    if hasattr(emitter, "_lookup_cache") and hasattr(emitter, "_handlers"):
        emitter._emit = _quick_emit(emitter)


def _quick_emit(emitter: Any) -> Callable[..., Awaitable[list[tuple[Any, Any]]]]:
    """aiobotocore's `_emit` for `emitter`, doing the same for less: a request emits ~10
    events to ~25 handlers, and aiobotocore logs each call and wraps each handler's
    answer in a coroutine of its own (`resolve_awaitable`) to see whether to await it."""

    async def _emit(
        event_name: str, kwargs: dict[str, Any], stop_on_response: bool = False
    ) -> list[tuple[Any, Any]]:
        handlers = emitter._lookup_cache.get(event_name)  # reset by every (un)register
        if handlers is None:
            handlers = emitter._handlers.prefix_search(event_name)
            emitter._lookup_cache[event_name] = handlers
        elif not handlers:
            return []
        kwargs["event_name"] = event_name
        responses = []
        for handler in handlers:
            response = handler(**kwargs)
            if response is not None and inspect.isawaitable(response):
                response = await response
            responses.append((handler, response))
            if stop_on_response and response is not None:
                break
        return responses

    return _emit


def _endpoints_once(resolver: Any) -> Callable[..., Awaitable[Any]]:
    """`resolver.construct_endpoint`, remembered per operation, bucket and the settings
    botocore's handlers choose for the call (its endpoint "builtins": region, path style,
    a bucket's region learned from a redirect...). Nothing else feeds the endpoint rules:
    PER_REQUEST_PARAMETERS are declared but never read by them (a test checks botocore's
    S3 rules)."""
    construct = resolver.construct_endpoint
    known: dict[tuple[Any, ...], Any] = {}

    async def construct_endpoint(operation_model: Any, call_args: Any, request_context: Any) -> Any:
        args = call_args or {}
        builtins = await resolver._get_customized_builtins(
            operation_model, args, request_context if request_context is not None else {}
        )
        key = (operation_model.name, args.get("Bucket"), *sorted(builtins.items()))
        try:
            found = known.get(key)
        except TypeError:  # a setting that cannot be a key: resolved every time
            return await construct(operation_model, call_args, request_context)
        if found is None:
            found = await construct(operation_model, call_args, request_context)
            if len(known) < 256:
                known[key] = found
        return found

    return construct_endpoint
