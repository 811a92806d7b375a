"""The bucket's JSON objects but tree nodes (`core.tree`) as msgspec Structs: snapshot,
head, tombstones, registry; and `Entry`, one path of a device's listing (pure).

Shapes follow SPEC section 1 exactly. Below the types: validation of whole objects (their
paths, ids and times by `core.paths`, `core.ids`, `core.timestamps`); deterministic
encoding; and decoding of untrusted bytes, which checks everything and reports any failure
as one `FormatError` line naming the object's key. Unknown fields are ignored (forward
compatibility); any `format` but 2 is refused, naming it (format 1, one manifest per
publish, is not read at all: SPEC 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.errors import FormatError, quoted
from dropbeard.core.ids import validate_id, validate_sha256
from dropbeard.core.paths import validate_path
from dropbeard.core.retention import parse_period
from dropbeard.core.timestamps import validate_snapshot_id, validate_timestamp

FORMAT = 2

PERMISSIONS = 0o777
"""The mode bits that are synced (SPEC 1.1): owner, group, setuid, setgid and sticky never."""

EntryType = Literal["file", "dir", "symlink"]
DeviceStatus = Literal["active", "retired"]
VersionVector = dict[str, int]


class Entry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One tracked path as a device holds it (what a tree entry says of it, by path: in
    the bucket only as `core.tree.TreeEntry`, checked there). Files carry size/mtime_ns/sha256 (and
    `chunks` when stored in chunks, SPEC 1.6), symlinks carry target, directories
    neither."""

    path: str
    type: EntryType
    mode: int
    version: VersionVector
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    target: str | None = None
    chunks: list[Chunk] | None = None


class SeenMark(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How far a device has processed another device: its snapshot id (None: it has
    processed none, or the device publishes nothing) and its tombstone seq."""

    snapshot: str | None = None
    tombstone_seq: int = 0


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """A device's commit point (SPEC 1.3): its current snapshot and the key of that
    snapshot's root tree (both None for a device that publishes nothing: its head only
    carries `seen`), and its tombstone seq."""

    format: int = FORMAT
    device_id: str
    snapshot: str | None
    tree: str | None
    published_at: str
    tombstone_seq: int = 0
    seen: dict[str, SeenMark] = {}


class Delete(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One explicit delete of a path; `sha256` only for files."""

    path: str
    type: EntryType
    version: VersionVector
    sha256: str | None = None


class TombstoneBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The deletes of one publish (SPEC 1.3), numbered by a per-device `seq`."""

    format: int = FORMAT
    device_id: str
    seq: int
    created_at: str
    deletes: list[Delete]


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One device in the registry; retired devices are ignored by sync and status."""

    status: DeviceStatus
    mode: str | None = None
    registered_at: str | None = None
    retired_at: str | None = None


DEFAULT_RETENTION = {"all": "48h", "hourly": "7d", "daily": "90d", "weekly": "2y"}
DEFAULT_GRACE = "24h"


class Registry(msgspec.Struct, frozen=True, kw_only=True):
    """The devices of a root (SPEC 1.5), keyed by device id, and the retention policy:
    `retention` rules (`all`, `hourly`, `daily`, `weekly`: periods as `core.retention`
    reads them) and the grace period. Absent from a registry, they take the defaults, and
    every registry written spells them out, so a person reading the bucket sees them."""

    format: int = FORMAT
    devices: dict[str, DeviceRecord] = {}
    retention: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_RETENTION))
    grace: str = DEFAULT_GRACE


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One publish of a device (SPEC 1.2, format 2): the history log, never rewritten.
    `snapshot` is its id (`YYYYMMDDTHHMMSSZ`, also its object's name), `tree` the key of
    its root node, `files`/`bytes` what that tree holds."""

    format: int = FORMAT
    device_id: str
    snapshot: str
    tree: str
    created_at: str
    files: int
    bytes: int


#: Sizes, counters and seqs must fit a signed 64-bit integer (SQLite, other readers).
MAX_INT = 2**63 - 1


# --- validation of whole objects ----------------------------------------------------


def _check_int(value: int, what: str, low: int, high: int = MAX_INT) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} is {value}, outside {low}..{high}")


def _check_version(version: VersionVector, what: str) -> None:
    if not version:
        raise ValueError(f"{what} is empty")
    for device, counter in version.items():
        try:
            validate_id(device)
        except ValueError as e:
            raise ValueError(f"{what}: device {e}") from None
        _check_int(counter, f"{what}: counter for {device}", 1)


def _check_fields(item: Delete, allowed: set[str]) -> None:
    for name in ("sha256",):
        if name not in allowed and getattr(item, name, None) is not None:
            raise ValueError(f"a {item.type} has no {name}")


def _check_deletes(deletes: Sequence[Delete]) -> None:
    """Each delete's path and fields, and that no path appears twice."""
    index: dict[str, int] = {}
    for i, item in enumerate(deletes):
        try:
            validate_path(item.path)
        except ValueError as e:
            raise ValueError(f"delete {i}: {e}") from None
        try:
            if item.path in index:
                raise ValueError(f"duplicate path (also delete {index[item.path]})")
            _check_version(item.version, "version")
            _check_fields(item, {"sha256"} if item.type == "file" else set())
            if item.sha256 is not None:
                validate_sha256(item.sha256)
        except ValueError as e:
            raise ValueError(f"delete {i} {quoted(item.path)}: {e}") from None
        index[item.path] = i


def _check_head(h: Head) -> None:
    _check_named(
        ("device_id", h.device_id, validate_id),
        ("published_at", h.published_at, validate_timestamp),
    )
    if (h.snapshot is None) != (h.tree is None):
        raise ValueError("snapshot and tree are both set or both null")
    if h.snapshot is not None and h.tree is not None:
        _check_named(("snapshot", h.snapshot, validate_snapshot_id), ("tree", h.tree, _sha256))
    _check_int(h.tombstone_seq, "tombstone_seq", 0)
    for device, mark in h.seen.items():
        _check_named((f"seen device {quoted(device)}", device, validate_id))
        if mark.snapshot is not None:
            _check_named((f"seen[{device}].snapshot", mark.snapshot, validate_snapshot_id))
        _check_int(mark.tombstone_seq, f"seen[{device}].tombstone_seq", 0)


def _sha256(value: str) -> str:
    validate_sha256(value)
    return value


def _check_tombstones(t: TombstoneBatch) -> None:
    _check_named(("device_id", t.device_id, validate_id))
    _check_int(t.seq, "seq", 0)
    _check_named(("created_at", t.created_at, validate_timestamp))
    _check_deletes(t.deletes)


def _check_snapshot(s: Snapshot) -> None:
    _check_named(
        ("device_id", s.device_id, validate_id),
        ("snapshot", s.snapshot, validate_snapshot_id),
        ("tree", s.tree, _sha256),
        ("created_at", s.created_at, validate_timestamp),
    )
    _check_int(s.files, "files", 0)
    _check_int(s.bytes, "bytes", 0)


def _check_registry(r: Registry) -> None:
    # Rules this dropbeard knows must read as periods; a rule added later is ignored
    # (unknown fields are, SPEC 1), so older readers keep working.
    for rule in ("all", "hourly", "daily", "weekly"):
        if rule in r.retention:
            _check_named((f"retention.{rule}", r.retention[rule], _valid_period))
    if r.grace is not None:
        _check_named(("grace", r.grace, _valid_period))
    for device, record in r.devices.items():
        _check_named((f"device {quoted(device)}", device, validate_id))
        # `mode` is informative here (a reader never acts on it): any id-like word, so a
        # mode added later does not make older readers reject the whole registry.
        if record.mode is not None:
            _check_named((f"devices[{device}].mode", record.mode, validate_id))
        for name in ("registered_at", "retired_at"):
            value = getattr(record, name)
            if value is not None:
                _check_named((f"devices[{device}].{name}", value, validate_timestamp))


def _valid_period(text: str) -> str:
    parse_period(text)
    return text


def _check_named(*checks: tuple[str, str, Callable[[str], str]]) -> None:
    for name, value, check in checks:
        try:
            check(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


# --- encoding and decoding ----------------------------------------------------------

_T = TypeVar("_T", Head, TombstoneBatch, Registry, Snapshot)

_encoder = msgspec.json.Encoder(order="deterministic")

_CHECKS: dict[type[msgspec.Struct], tuple[str, Callable[..., None]]] = {
    Head: ("head", _check_head),
    TombstoneBatch: ("tombstones", _check_tombstones),
    Registry: ("registry", _check_registry),
    Snapshot: ("snapshot", _check_snapshot),
}


def encode(obj: msgspec.Struct) -> bytes:
    """Deterministic JSON for `obj`: the same value always gives the same bytes (fields in
    their order, mappings sorted: the canonical encoding of a snapshot, SPEC 1).

    A Head, TombstoneBatch, Registry or Snapshot is checked first (ValueError if it is one
    other devices would reject)."""
    if type(obj) in _CHECKS:
        kind, check = _CHECKS[type(obj)]
        try:
            check(obj)
        except ValueError as e:
            raise ValueError(f"refusing to write an invalid {kind}: {e}") from None
    return _encoder.encode(obj)


class _Envelope(msgspec.Struct):
    format: int


_envelope = msgspec.json.Decoder(_Envelope)
_decoders: dict[type[msgspec.Struct], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in _CHECKS
}


def _one_line(text: str, limit: int = 400) -> str:
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode(data: bytes, key: str, cls: type[_T]) -> _T:
    kind, check = _CHECKS[cls]
    try:
        version = _envelope.decode(data).format
        if version > FORMAT:
            raise FormatError(
                _one_line(
                    f"{kind} {key}: format {version} is newer than this dropbeard "
                    f"understands ({FORMAT}); upgrade dropbeard"
                )
            )
        if version < FORMAT:
            raise ValueError(
                f"format {version} is an earlier dropbeard's, which this one does not read "
                f"(it reads format {FORMAT} only)"
                if isinstance(version, int) and version >= 1
                else f"format {version} is not a dropbeard format"
            )
        obj: _T = _decoders[cls].decode(data)
        check(obj)
    except (msgspec.DecodeError, ValueError) as e:
        problem = str(e)
        if problem[1:2].islower():  # msgspec's "Expected …", but not "JSON is …"
            problem = problem[:1].lower() + problem[1:]
        raise FormatError(_one_line(f"invalid {kind} {key}: {problem}")) from None
    except RecursionError:  # msgspec's answer to JSON nested deeper than it will go
        raise FormatError(_one_line(f"invalid {kind} {key}: JSON nested too deeply")) from None
    return obj


def decode_head(data: bytes, key: str) -> Head:
    """The head in `data` (read from `key`), fully checked; FormatError otherwise."""
    return _decode(data, key, Head)


def decode_tombstones(data: bytes, key: str) -> TombstoneBatch:
    """The tombstone batch in `data` (read from `key`), fully checked; FormatError otherwise."""
    return _decode(data, key, TombstoneBatch)


def decode_registry(data: bytes, key: str) -> Registry:
    """The registry in `data` (read from `key`), fully checked; FormatError otherwise."""
    return _decode(data, key, Registry)


def decode_snapshot(data: bytes, key: str) -> Snapshot:
    """The snapshot in `data` (read from `key`), fully checked; FormatError otherwise."""
    return _decode(data, key, Snapshot)
