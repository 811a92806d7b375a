"""What S3 servers answer, read without botocore (IO-free): timestamps, an error's code
and message, a page of a ListObjectsV2 listing, and which errors botocore raised show
that the server authenticated the request.

botocore parses the same answers through its response parsers; these read only what
dropbeard uses, for the requests stamped from known shapes (`dropbeard.store.s3objects`),
so that a command whose requests are all stamped never imports botocore. An answer that
is not what S3 sends fails with a one-line error naming what is wrong, never a traceback.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_plus
from xml.etree import ElementTree

import msgspec

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
    from botocore.utils import parse_timestamp as botocore_parse_timestamp

    parsed: datetime = botocore_parse_timestamp(value)
    return parsed


def _utc(*fields: str | int) -> datetime:
    year, month, day, hour, minute, second, micro = map(int, fields)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


class Problem(msgspec.Struct, frozen=True):
    """An error answer: its S3 error code (or the status, when it has none), message and
    HTTP status."""

    code: str
    message: str
    status: int


def parse_error(status: int, body: bytes) -> Problem:
    """The error a non-2xx answer carries, as botocore reads it: `<Error><Code>` and
    `<Message>` from an XML body, else the status and its reason phrase (a HEAD's or a
    304's answer has no body)."""
    code = message = ""
    if body.strip():
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            root = None
        if root is not None:
            for child in root.iter():
                name = _local(child.tag)
                if name == "Code" and not code:
                    code = (child.text or "").strip()
                elif name == "Message" and not message:
                    message = (child.text or "").strip()
    if not code:
        code = str(status)
    if not message:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = ""
    return Problem(code, message, status)


class Listed(msgspec.Struct, frozen=True):
    """One object of a listing page."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None


class ListingPage(msgspec.Struct, frozen=True):
    """One page of a ListObjectsV2 listing, its keys decoded."""

    objects: list[Listed]
    prefixes: list[str]
    truncated: bool
    next_token: str | None


class MalformedAnswer(ValueError):
    """An answer that is not what S3 sends (the message says what is wrong)."""


def parse_listing(body: bytes) -> ListingPage:
    """A ListObjectsV2 answer's page. Keys, prefixes and the token are URL-decoded when
    the answer says `EncodingType` url (as botocore decodes them for the listings it
    asks that encoding for)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise MalformedAnswer(f"the listing is not XML ({exc})") from None
    if _local(root.tag) != "ListBucketResult":
        raise MalformedAnswer(f"the listing is a <{_local(root.tag)[:40]}>, not a ListBucketResult")
    fields: dict[str, str] = {}
    entries: list[dict[str, str]] = []
    prefixes: list[str] = []
    for child in root:
        name = _local(child.tag)
        if name == "Contents":
            entries.append({_local(c.tag): c.text or "" for c in child})
        elif name == "CommonPrefixes":
            prefixes.extend(c.text or "" for c in child if _local(c.tag) == "Prefix")
        else:
            fields[name] = child.text or ""
    decode = unquote_plus if fields.get("EncodingType") == "url" else _same
    objects = []
    for entry in entries:
        if "Key" not in entry:
            raise MalformedAnswer("a listed object has no Key")
        try:
            size = int(entry.get("Size", "0"))
        except ValueError:
            raise MalformedAnswer(f"a listed object's Size is {entry['Size'][:40]!r}") from None
        modified = entry.get("LastModified")
        try:
            when = parse_timestamp(modified) if modified else None
        except Exception:
            shown = str(modified)[:40]
            raise MalformedAnswer(f"a listed object's LastModified is {shown!r}") from None
        objects.append(Listed(decode(entry["Key"]), size, entry.get("ETag", ""), when))
    truncated = fields.get("IsTruncated", "false").strip().lower() == "true"
    token = fields.get("NextContinuationToken") or None
    return ListingPage(objects, [decode(p) for p in prefixes], truncated, token)


def _local(tag: Any) -> str:
    """An element's name without its namespace."""
    return str(tag).rpartition("}")[2]


def _same(text: str) -> str:
    return text


def authenticated(exc: BaseException) -> bool:
    """Whether botocore's request failed with an answer a server gives only to a request
    it authenticated and understood: the key missing (404, not the bucket), a condition
    not met (412), nothing changed (304). The request's shape is learnt from it as from
    a success: `init` of a new root GETs only objects that are not there yet, and each
    command after it would otherwise learn GET through botocore again. A redirect, an
    authentication failure or a bad request teaches nothing."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    return status in (304, 412) or (status == 404 and code != "NoSuchBucket")


__all__ = [
    "ListingPage",
    "MalformedAnswer",
    "Problem",
    "authenticated",
    "parse_error",
    "parse_listing",
    "parse_timestamp",
]
