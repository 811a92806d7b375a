"""Format-2 tree nodes (SPEC 1.1): their types, canonical encoding, key, and the decoding
of untrusted bytes (pure).

A node lists one directory's direct children (`entries`), or, for a large directory, the
pages it is cut into (`pages`, see `core.treepages`). Its key is the SHA-256 of its
canonical bytes: UTF-8 JSON without whitespace, fields in the order SPEC shows (the order
of the Struct fields below; version vectors sorted by device id), entries sorted by the
UTF-8 bytes of `name`. Decoding checks the bytes against the key first, then everything
else, as strictly as `core.model` checks format 1: number ranges in msgspec's C decoder
(cheap at a million entries); names, their order, digests, device ids and the fields
each type needs here. A failure is one line naming the node's key: `IntegrityError` when
the bytes do not match the key, `FormatError` for anything else.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from dropbeard.core.chunking import Chunk, validate_chunks
from dropbeard.core.errors import FormatError, IntegrityError, quoted
from dropbeard.core.ids import validate_id
from dropbeard.core.model import MAX_INT, EntryType
from dropbeard.core.paths import LOCAL_DIR, MAX_SEGMENT_BYTES

FORMAT = 2
#: Nodes larger than this, or listing more items, are refused unread: dropbeard writes
#: at most 128 items per node (a few tens of KiB), so these only stop a hostile bucket
#: from making a reader hold or parse an absurd object.
MAX_NODE_BYTES = 8 * 1024 * 1024
MAX_NODE_ITEMS = 100_000

#: Number ranges msgspec checks while decoding (in C: cheap at a million entries).
#: Digests and device ids are checked by `check_node`: msgspec's regular expressions
#: tripled the cost of decoding.
Counter = Annotated[int, Meta(ge=1, le=MAX_INT)]
Size = Annotated[int, Meta(ge=0, le=MAX_INT)]
TimeNs = Annotated[int, Meta(ge=-MAX_INT - 1, le=MAX_INT)]
Mode = Annotated[int, Meta(ge=0, le=0o777)]  # permission bits only (SPEC 1.1)
Version = Annotated[dict[str, Counter], Meta(min_length=1)]


class TreeEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One child of a directory. A file carries size, mtime_ns and sha256 (and `chunks`
    when stored in chunks); a symlink its target; a directory the key of its node."""

    name: str
    type: EntryType
    size: Size | None = None
    target: str | None = None
    mode: Mode
    mtime_ns: TimeNs | None = None
    sha256: str | None = None
    chunks: list[Chunk] | None = None
    version: Version
    tree: str | None = None


class Page(msgspec.Struct, frozen=True):
    """One page of a paged directory: the name of its first entry and its node's key."""

    first: str
    tree: str


class Node(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A directory's listing (`entries`) or index (`pages`), never both."""

    format: int
    entries: list[TreeEntry] | None = None
    pages: list[Page] | None = None


_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(Node)


class _Envelope(msgspec.Struct):
    format: Any = None


_envelope = msgspec.json.Decoder(_Envelope)


def node_key(data: bytes) -> str:
    """The key (lowercase hex SHA-256) of a node's bytes."""
    return hashlib.sha256(data).hexdigest()


def validate_name(name: str) -> str:
    """`name` if it may name a child in a node, else ValueError: one path segment, NFC,
    valid UTF-8 of at most 255 bytes, not empty, `.` or `..`, without `/` or NUL.
    (`.dropbear` is refused only in the root node: `check_root`.)"""
    if name in ("", ".", ".."):
        raise ValueError(f"name {name!r} is not allowed")
    if "/" in name or "\x00" in name:
        raise ValueError(f"name {quoted(name)} contains '/' or NUL")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"name {quoted(name)} is not valid UTF-8") from None
    if size > MAX_SEGMENT_BYTES:
        raise ValueError(f"name {quoted(name)} is longer than {MAX_SEGMENT_BYTES} bytes")
    if not name.isascii() and not unicodedata.is_normalized("NFC", name):
        raise ValueError(f"name {quoted(name)} is not NFC-normalised")
    return name


# --- checks ----------------------------------------------------------------------------


def _check_file(e: TreeEntry) -> None:
    if e.size is None or e.mtime_ns is None or e.sha256 is None:
        raise ValueError("a file needs size, mtime_ns and sha256")
    if e.target is not None or e.tree is not None:
        raise ValueError("a file has no target or tree")
    if e.chunks is not None:
        if not e.chunks:
            raise ValueError("chunks is empty")
        validate_chunks(e.chunks, e.size)  # digests, sizes, their sum (SPEC 1.6)


def _check_other(e: TreeEntry) -> None:
    if e.size is not None or e.mtime_ns is not None or e.sha256 is not None:
        raise ValueError(f"a {e.type} has no size, mtime_ns or sha256")
    if e.chunks is not None:
        raise ValueError(f"a {e.type} has no chunks")
    if e.type == "dir":
        if e.tree is None:
            raise ValueError("a dir needs a tree")
        if e.target is not None:
            raise ValueError("a dir has no target")
    else:
        if e.tree is not None:
            raise ValueError("a symlink has no tree")
        if not e.target or "\x00" in e.target:
            raise ValueError("a symlink needs a target without NUL")


_is_sha256 = re.compile(r"[0-9a-f]{64}").fullmatch  # as core.ids.validate_sha256


@functools.lru_cache(maxsize=4096)
def _valid_device(device: str) -> bool:
    try:
        validate_id(device)
    except ValueError:
        return False
    return True


def _check_ids(e: TreeEntry) -> None:
    """Digests are lowercase hex SHA-256, device ids valid ids."""
    for device in e.version:
        if not _valid_device(device):
            raise ValueError(f"version: device {quoted(device)} is not a valid id")
    for field, digest in (("sha256", e.sha256), ("tree", e.tree)):
        if digest is not None and not _is_sha256(digest):
            raise ValueError(f"{field} {quoted(digest)} is not a lowercase hex SHA-256")


def _check_ranges(e: TreeEntry) -> None:
    """What msgspec checks when decoding (the `Meta` annotations above), for a writer."""
    if not 0 <= e.mode <= 0o777:
        raise ValueError(f"mode {oct(e.mode)} is outside 0..0o777")
    if not e.version:
        raise ValueError("version is empty")
    for counter in e.version.values():
        if not 1 <= counter <= MAX_INT:
            raise ValueError(f"version: counter {counter} is outside 1..{MAX_INT}")
    if e.size is not None and not 0 <= e.size <= MAX_INT:
        raise ValueError(f"size {e.size} is outside 0..{MAX_INT}")
    if e.mtime_ns is not None and not -MAX_INT - 1 <= e.mtime_ns <= MAX_INT:
        raise ValueError(f"mtime_ns {e.mtime_ns} is outside the 64-bit range")


def _check_entries(entries: Sequence[TreeEntry], values: bool) -> None:
    """Names valid and strictly increasing; each entry's fields right for its type.
    (Python orders str by code point: the order of their UTF-8 bytes, surrogates aside,
    which `validate_name` refuses.)"""
    previous = ""
    for i, e in enumerate(entries):
        name = e.name
        try:
            validate_name(name)
            if i and name <= previous:
                raise ValueError("names out of order" if name < previous else "duplicate name")
            if e.type == "file":
                _check_file(e)
            else:
                _check_other(e)
            _check_ids(e)
            if values:
                _check_ranges(e)
        except ValueError as exc:
            raise ValueError(f"entry {i} {quoted(name)}: {exc}") from None
        previous = name


def _check_pages(pages: Sequence[Page]) -> None:
    if not pages:
        raise ValueError("an index lists no pages")
    previous = ""
    for i, page in enumerate(pages):
        try:
            validate_name(page.first)
            if i and page.first <= previous:
                raise ValueError("pages out of order")
            if not _is_sha256(page.tree):
                raise ValueError(f"tree {quoted(page.tree)} is not a lowercase hex SHA-256")
        except ValueError as exc:
            raise ValueError(f"page {i} {quoted(page.first)}: {exc}") from None
        previous = page.first


def check_node(node: Node, *, values: bool = True) -> None:
    """ValueError unless `node` is a valid format-2 node. `values=False` leaves out what
    msgspec already checked while decoding it (number ranges)."""
    if node.format != FORMAT:
        raise ValueError(_format_message(node.format))
    items = node.entries if node.entries is not None else node.pages
    if (node.entries is None) == (node.pages is None):
        raise ValueError("a node holds either entries or pages")
    assert items is not None
    if len(items) > MAX_NODE_ITEMS:
        raise ValueError(f"it lists {len(items)} items, more than {MAX_NODE_ITEMS}")
    if node.entries is not None:
        _check_entries(node.entries, values)
    else:
        assert node.pages is not None
        _check_pages(node.pages)


def reserved_in_root(name: str) -> bool:
    """True if `name` may not appear in a root node: dropbeard's own `.dropbear`
    (compared as `core.paths` does: ignoring case)."""
    return name.casefold() == LOCAL_DIR


def check_root(node: Node, key: str) -> None:
    """FormatError if the root node (or a page of it) `node`, read from `key`, lists a
    name `reserved_in_root`."""
    for entry in node.entries or ():
        if reserved_in_root(entry.name):
            raise FormatError(f"invalid tree {key}: the root lists {entry.name!r}")


# --- encoding and decoding -------------------------------------------------------------


def encode_node(node: Node) -> bytes:
    """The canonical bytes of `node`, which must already hold its items in order;
    ValueError (a bug in the writer) if it is not a node every reader accepts."""
    try:
        check_node(node)
    except ValueError as exc:
        raise ValueError(f"refusing to write an invalid tree node: {exc}") from None
    return _encoder.encode(node)


def entries_node(entries: Iterable[TreeEntry]) -> bytes:
    """The canonical bytes of a node listing `entries` (in any order)."""
    return encode_node(Node(format=FORMAT, entries=sorted(entries, key=lambda e: e.name)))


def index_node(pages: Sequence[Page]) -> bytes:
    """The canonical bytes of an index node over `pages` (in order)."""
    return encode_node(Node(format=FORMAT, pages=list(pages)))


def decode_node(data: bytes, digest: str, key: str) -> Node:
    """The node whose key is `digest`, read from `key`, fully checked: IntegrityError if
    the bytes do not hash to `digest`, FormatError for anything else wrong with them."""
    if len(data) > MAX_NODE_BYTES:
        raise FormatError(f"invalid tree {key}: {len(data)} bytes, more than {MAX_NODE_BYTES}")
    actual = node_key(data)
    if actual != digest:
        raise IntegrityError(
            f"reading tree {key}: its bytes hash to {actual[:16]}…, not its key", key
        )
    try:
        node = _decoder.decode(data)
        check_node(node, values=False)
    except msgspec.ValidationError as exc:
        problem = _format_problem(data) or _lower_first(str(exc))
        raise FormatError(_one_line(f"invalid tree {key}: {problem}")) from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise FormatError(_one_line(f"invalid tree {key}: {_lower_first(str(exc))}")) from None
    except RecursionError:
        raise FormatError(f"invalid tree {key}: JSON nested too deeply") from None
    return node


def _format_problem(data: bytes) -> str | None:
    """Why a node that failed to decode is not format 2 at all, if that is the reason."""
    try:
        version = _envelope.decode(data).format
    except (msgspec.DecodeError, RecursionError):
        return None
    return None if version == FORMAT else _format_message(version)


def _format_message(version: object) -> str:
    if isinstance(version, int) and version > FORMAT:
        return f"format {version} is newer than this dropbeard understands ({FORMAT}); upgrade"
    return f"format {version!r} is not format {FORMAT}, the only one this dropbeard reads"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _one_line(text: str, limit: int = 400) -> str:
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
