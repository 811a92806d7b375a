"""How dropbeard's S3 client makes each request cheaper than botocore's defaults (IO-free:
event handlers and a signer, installed on one client by `streamline`).

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
- **The User-Agent built once per request**, not a second time just before sending, and
  no per-request invocation id (a uuid4 and two headers only AWS's own retry metrics use).
- **Timestamps parsed by their fixed formats** (`parse_timestamp`): botocore hands every
  `Last-Modified` header and listing date to dateutil's general parser, which costs
  ~0.15 ms each, more than the rest of parsing a GET's response.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from botocore import auth as botocore_auth
from botocore.handlers import add_expect_header, add_retry_headers
from botocore.utils import parse_timestamp as botocore_parse_timestamp

#: Request parameter (popped before validation) carrying the body's known SHA-256 (hex).
PAYLOAD_SHA256 = "DropbeardPayloadSha256"
_CONTEXT_KEY = "dropbeard_payload_sha256"
_SIGNER = "dropbeard-s3v4"
#: Operations whose body may come with a known hash.
_WITH_BODY = ("PutObject", "UploadPart")


class KnownPayloadS3SigV4Auth(botocore_auth.S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 SigV4 signer, taking the payload hash from the request context."""

    def payload(self, request: Any) -> str:
        known = request.context.get(_CONTEXT_KEY)
        if isinstance(known, str):
            return known
        return str(super().payload(request))


botocore_auth.AUTH_TYPE_MAPS.setdefault(_SIGNER, KnownPayloadS3SigV4Auth)


def _take_known_hash(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """before-parameter-build: move PAYLOAD_SHA256 from the parameters to the context."""
    known = params.pop(PAYLOAD_SHA256, None)
    if known is not None:
        context[_CONTEXT_KEY] = known


def _choose_known_payload_signer(
    context: dict[str, Any], signing_name: str, **_: Any
) -> str | None:
    """choose-signer: plain S3 SigV4 with the known payload hash, for a request that has
    one and would otherwise be signed with a hashed payload; else botocore decides."""
    if (
        _CONTEXT_KEY in context
        and signing_name == "s3"
        and context.get("auth_type") == "v4"
        and not context.get("unsigned_payload")
    ):
        return _SIGNER
    return None


_MONTHS = {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6}
_MONTHS |= {"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
_ISO_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6})\d*)?Z")


def parse_timestamp(value: Any) -> datetime:
    """An HTTP date (`Wed, 02 Dec 2026 02:40:16 GMT`) or an ISO 8601 UTC time with `Z`
    (`2026-12-02T02:40:16.123Z`), the two forms S3 servers send, as an aware UTC datetime;
    anything else (or an impossible date) as botocore parses it."""
    if isinstance(value, str):
        try:
            if match := _HTTP_DATE.fullmatch(value):
                day, month, year, hour, minute, second = match.groups()
                if month in _MONTHS:
                    return _utc(year, _MONTHS[month], day, hour, minute, second, "0")
            elif match := _ISO_DATE.fullmatch(value):
                year, month_n, day, hour, minute, second, fraction = match.groups()
                micro = (fraction or "0").ljust(6, "0")
                return _utc(year, month_n, day, hour, minute, second, micro)
        except ValueError:
            pass  # botocore's parser says what is wrong with it
    parsed: datetime = botocore_parse_timestamp(value)
    return parsed


def _utc(*fields: str | int) -> datetime:
    year, month, day, hour, minute, second, micro = map(int, fields)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def tune_parsers(session: Any) -> None:
    """Parse the timestamps of every response of clients created by `session` with
    `parse_timestamp` (botocore's documented parser default)."""
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )


def streamline(client: Any) -> None:
    """Install the above on `client` (its own event emitter: other clients keep botocore's
    defaults)."""
    events = client.meta.events
    events.unregister("before-call.s3", add_expect_header)
    events.unregister("request-created", add_retry_headers)
    user_agent = getattr(client, "_user_agent_creator", None)
    if user_agent is not None:
        events.unregister("request-created.s3", user_agent.rebuild_and_replace_user_agent_handler)
    for operation in _WITH_BODY:
        events.register(f"before-parameter-build.s3.{operation}", _take_known_hash)
        events.register(f"choose-signer.s3.{operation}", _choose_known_payload_signer)
