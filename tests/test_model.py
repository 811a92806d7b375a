"""Bucket objects but tree nodes (tests/test_tree_node.py): deterministic encoding, and
decoding that refuses every malformed input, format 1 included, with one line naming the
key (SPEC 1)."""

from __future__ import annotations

import copy
import json
import unicodedata
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from dropbeard.core.errors import FormatError
from dropbeard.core.model import (
    Delete,
    DeviceRecord,
    Head,
    Registry,
    SeenMark,
    Snapshot,
    TombstoneBatch,
    decode_head,
    decode_registry,
    decode_snapshot,
    decode_tombstones,
    encode,
)

SHA_A = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # "test"
SHA_B = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # ""
HEAD_KEY = "roots/notes/devices/laptop/head.json"
TOMBSTONE_KEY = "roots/notes/devices/laptop/tombstones/00000000000000000043.json"
REGISTRY_KEY = "roots/notes/devices/registry.json"
SNAPSHOT_KEY = "roots/notes/devices/laptop/snapshots/20260522T180500Z.json"

# The SPEC's examples (sections 1.2-1.5), digests and times filled in.
SPEC_HEAD = b"""{"format": 2, "device_id": "laptop", "snapshot": "20260522T180500Z",
 "tree": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 "published_at": "2026-05-22T18:05:00Z",
 "tombstone_seq": 42,
 "seen": {"desktop": {"snapshot": "20260522T175900Z", "tombstone_seq": 17}}}"""
SPEC_TOMBSTONES = b"""{"format": 2, "device_id": "laptop", "seq": 43,
 "created_at": "2026-05-22T18:05:00Z",
 "deletes": [{"path": "docs/old.md", "type": "file",
              "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
              "version": {"laptop": 8, "desktop": 2}}]}"""
SPEC_REGISTRY = b"""{"format": 2, "devices": {"laptop": {"status": "active",
  "mode": "bidirectional", "registered_at": "2026-05-01T09:00:00Z"},
  "old-phone": {"status": "retired", "retired_at": "2026-05-20T12:00:00Z"}},
 "retention": {"all": "48h", "hourly": "7d", "daily": "90d", "weekly": "2y"},
 "grace": "24h"}"""
SPEC_SNAPSHOT = (
    '{"format": 2, "device_id": "laptop", "snapshot": "20260522T180500Z", "tree": "'
    + "5e88" * 16
    + '", "created_at": "2026-05-22T18:05:00Z", "files": 18231, "bytes": 5120000000}'
)
#: What a non-publishing device (download-only, archive-only) writes: `seen` only.
SILENT_HEAD = b"""{"format": 2, "device_id": "backup", "snapshot": null, "tree": null,
 "published_at": "2026-05-22T18:05:00Z", "tombstone_seq": 0,
 "seen": {"laptop": {"snapshot": "20260522T180500Z", "tombstone_seq": 42}}}"""


def test_spec_examples_decode() -> None:
    h = decode_head(SPEC_HEAD, HEAD_KEY)
    assert (h.snapshot, h.tree) == ("20260522T180500Z", SHA_B)
    assert h.seen == {"desktop": SeenMark(snapshot="20260522T175900Z", tombstone_seq=17)}
    t = decode_tombstones(SPEC_TOMBSTONES, TOMBSTONE_KEY)
    assert t.seq == 43 and t.deletes[0].path == "docs/old.md"
    r = decode_registry(SPEC_REGISTRY, REGISTRY_KEY)
    assert r.devices["old-phone"].status == "retired" and r.grace == "24h"
    silent = decode_head(SILENT_HEAD, HEAD_KEY)
    assert (silent.snapshot, silent.tree, silent.seen["laptop"].tombstone_seq) == (None, None, 42)


OBJECTS = [
    pytest.param(
        Head(
            device_id="laptop",
            snapshot="20260522T180500Z",
            tree=SHA_B,
            published_at="2026-05-22T18:05:00Z",
            tombstone_seq=42,
            seen={
                "desktop": SeenMark(snapshot="20260522T175900Z", tombstone_seq=17),
                "new": SeenMark(),
            },
        ),
        decode_head,
        id="head",
    ),
    pytest.param(
        Head(
            device_id="backup",
            snapshot=None,
            tree=None,
            published_at="2026-05-22T18:05:00Z",
            seen={"laptop": SeenMark(snapshot="20260522T180500Z", tombstone_seq=3)},
        ),
        decode_head,
        id="head-of-a-device-that-publishes-nothing",
    ),
    pytest.param(
        TombstoneBatch(
            device_id="laptop",
            seq=43,
            created_at="2026-05-22T18:05:00Z",
            deletes=[
                Delete(path="docs/old.md", type="file", sha256=SHA_A, version={"laptop": 8}),
                Delete(path="old-dir", type="dir", version={"laptop": 9, "desktop": 1}),
            ],
        ),
        decode_tombstones,
        id="tombstones",
    ),
    pytest.param(
        Registry(
            devices={
                "laptop": DeviceRecord(
                    status="active", mode="bidirectional", registered_at="2026-05-01T09:00:00Z"
                ),
                "old-phone": DeviceRecord(status="retired", retired_at="2026-05-20T12:00:00Z"),
            }
        ),
        decode_registry,
        id="registry",
    ),
    pytest.param(Registry(), decode_registry, id="empty-registry"),
    pytest.param(
        Registry(retention={"all": "1h", "hourly": "2d", "daily": "0", "weekly": "1y"}, grace="2h"),
        decode_registry,
        id="registry-retention",
    ),
    pytest.param(
        Snapshot(
            device_id="laptop",
            snapshot="20260522T180500Z",
            tree="5e88" * 16,
            created_at="2026-05-22T18:05:00Z",
            files=18231,
            bytes=5_120_000_000,
        ),
        decode_snapshot,
        id="snapshot",
    ),
]


def test_a_snapshot_is_written_in_the_canonical_encoding() -> None:
    """SPEC 1: fields in the order shown, no whitespace: the same snapshot, the same bytes."""
    snap = decode_snapshot(SPEC_SNAPSHOT.encode(), SNAPSHOT_KEY)
    assert encode(snap) == json.dumps(json.loads(SPEC_SNAPSHOT), separators=(",", ":")).encode()


def test_version_vectors_are_written_sorted_whatever_order_they_were_built_in() -> None:
    deletes = [Delete(path="a", type="dir", version={"z": 1, "a": 2, "m": 3})]
    batch = TombstoneBatch(device_id="d", seq=1, created_at="2026-05-22T18:05:00Z", deletes=deletes)
    assert b'"version":{"a":2,"m":3,"z":1}' in encode(batch)


def test_unknown_fields_are_ignored() -> None:
    head = json.loads(SPEC_HEAD)
    head["hostname"] = "laptop.local"
    head["seen"]["desktop"]["at"] = "2026-05-22T18:00:00Z"
    assert decode_head(json.dumps(head).encode(), "k") == decode_head(SPEC_HEAD, "k")
    reg = json.loads(SPEC_REGISTRY)
    reg["devices"]["laptop"]["os"] = "linux"
    assert decode_registry(json.dumps(reg).encode(), "k") == decode_registry(SPEC_REGISTRY, "k")
    tomb = json.loads(SPEC_TOMBSTONES)
    tomb["deletes"][0]["reason"] = "user"
    assert decode_tombstones(json.dumps(tomb).encode(), "k") == decode_tombstones(
        SPEC_TOMBSTONES, "k"
    )
    snap = json.loads(SPEC_SNAPSHOT)
    snap["comment"] = "nightly"
    assert decode_snapshot(json.dumps(snap).encode(), "k") == decode_snapshot(
        SPEC_SNAPSHOT.encode(), "k"
    )


# --- rejection ----------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], object]


def _assert_rejected(
    decode: Callable[[bytes, str], object], data: bytes, key: str, reason: str
) -> None:
    with pytest.raises(FormatError) as info:
        decode(data, key)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert key in message
    assert reason in message
    assert len(message) < 500


FORMAT_1 = {
    "head": (
        decode_head,
        HEAD_KEY,
        {"format": 1, "device_id": "laptop", "manifest": "20260522T180500Z",
         "manifest_sha256": SHA_B, "published_at": "2026-05-22T18:05:00Z"},
    ),
    "tombstones": (decode_tombstones, TOMBSTONE_KEY, {**json.loads(SPEC_TOMBSTONES), "format": 1}),
    "registry": (decode_registry, REGISTRY_KEY, {"format": 1, "devices": {}}),
    "snapshot": (decode_snapshot, SNAPSHOT_KEY, {**json.loads(SPEC_SNAPSHOT), "format": 1}),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(FORMAT_1))
def test_a_format_1_object_is_refused_naming_the_format_and_the_object(kind: str) -> None:
    decode, key, doc = FORMAT_1[kind]
    with pytest.raises(FormatError) as info:
        decode(json.dumps(doc).encode(), key)
    assert str(info.value) == (
        f"invalid {kind} {key}: format 1 is an earlier dropbeard's, which this one does not "
        "read (it reads format 2 only)"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"not json", "JSON is malformed", id="not-json"),
        pytest.param(b"", "truncated", id="empty-bytes"),
        pytest.param(b"[1, 2]", "expected `object`, got `array`", id="array"),
        pytest.param(b"null", "expected `object`, got `null`", id="null"),
        pytest.param(SPEC_HEAD[:100], "truncated", id="truncated"),
        pytest.param(b"\xff\xfe{}", "malformed", id="not-utf8"),
        pytest.param(
            SPEC_HEAD.replace(b"published_at", b"publ\nished_at", 1), "malformed", id="raw-newline"
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "expected `object`", id="nested"),
    ],
)
def test_head_rejects_bytes(data: bytes, reason: str) -> None:
    _assert_rejected(decode_head, data, HEAD_KEY, reason)


def test_message_never_holds_the_whole_object() -> None:
    doc = json.loads(SPEC_TOMBSTONES)
    doc["deletes"] += [
        {"path": f"f{i}-" + "x" * 200, "type": "dir", "version": {"a": 1}} for i in range(1000)
    ]
    doc["deletes"][-1]["path"] = "y" * 300 + "/../z\nw"
    _assert_rejected(decode_tombstones, json.dumps(doc).encode(), TOMBSTONE_KEY, "delete 1000")
    doc["deletes"][-1]["type"] = "z" * 5000
    _assert_rejected(decode_tombstones, json.dumps(doc).encode(), TOMBSTONE_KEY, "enum")


def _set(field: str, value: object) -> Edit:
    return lambda doc: doc.update({field: value})


HEAD_CASES = [
    pytest.param(_set("format", 3), "format 3 is newer", id="format-newer"),
    pytest.param(_set("format", "2"), "format", id="format-string"),
    pytest.param(_set("format", 0), "format 0 is not a dropbeard format", id="format-zero"),
    pytest.param(lambda d: d.pop("format"), "format", id="format-missing"),
    pytest.param(_set("device_id", "lap top"), "device_id", id="bad-device-id"),
    pytest.param(_set("snapshot", "2026-05-22T18:05:00Z"), "snapshot", id="bad-snapshot-id"),
    pytest.param(_set("snapshot", "20260522T250500Z"), "snapshot", id="impossible-snapshot-id"),
    pytest.param(_set("tree", SHA_A.upper()), "tree", id="bad-tree-key"),
    pytest.param(_set("tree", "../../x"), "tree", id="tree-traversal"),
    pytest.param(_set("tree", None), "both set or both null", id="snapshot-without-tree"),
    pytest.param(_set("snapshot", None), "both set or both null", id="tree-without-snapshot"),
    pytest.param(lambda d: d.pop("tree"), "tree", id="tree-missing"),
    pytest.param(_set("published_at", "yesterday"), "published_at", id="bad-published-at"),
    pytest.param(_set("tombstone_seq", -1), "tombstone_seq", id="negative-seq"),
    pytest.param(_set("seen", {"BAD": {}}), "seen device", id="seen-bad-device"),
    pytest.param(
        _set("seen", {"d": {"snapshot": "x"}}), "seen[d].snapshot", id="seen-bad-snapshot"
    ),
    pytest.param(
        _set("seen", {"d": {"tombstone_seq": -3}}), "seen[d].tombstone_seq", id="seen-negative-seq"
    ),
    pytest.param(_set("seen", []), "seen", id="seen-not-object"),
]


@pytest.mark.parametrize(("edit", "reason"), HEAD_CASES)
def test_head_rejects(edit: Edit, reason: str) -> None:
    doc = json.loads(SPEC_HEAD)
    edit(doc)
    _assert_rejected(decode_head, json.dumps(doc).encode(), HEAD_KEY, reason)


def _delete(**fields: Any) -> Edit:
    return lambda doc: doc["deletes"][0].update(fields)


TOMBSTONE_CASES = [
    pytest.param(_set("format", 7), "format 7 is newer", id="format-newer"),
    pytest.param(_delete(path="a/../b"), "'..' segment", id="inner-traversal"),
    pytest.param(_delete(path="/etc/x"), "absolute", id="absolute"),
    pytest.param(_delete(path="a\x00b"), "NUL", id="nul"),
    pytest.param(_delete(path=unicodedata.normalize("NFD", "café")), "NFC", id="non-nfc"),
    pytest.param(_delete(version={"Desk Top": 1}), "device", id="bad-version-device"),
    pytest.param(_delete(version={"laptop": 0}), "counter", id="zero-counter"),
    pytest.param(_delete(type="socket"), "socket", id="unknown-type"),
    pytest.param(_set("seq", -1), "seq", id="negative-seq"),
    pytest.param(_set("device_id", "_x"), "device_id", id="bad-device-id"),
    pytest.param(_set("created_at", "…"), "created_at", id="bad-created-at"),
    pytest.param(_delete(path="../etc"), "'..' segment", id="traversal"),
    pytest.param(_delete(path=".dropbear/state.sqlite"), ".dropbear", id="under-dropbear"),
    pytest.param(_delete(sha256="abc"), "SHA-256", id="bad-digest"),
    pytest.param(_delete(type="dir"), "sha256", id="dir-with-sha256"),
    pytest.param(_delete(version={}), "version is empty", id="empty-version"),
    pytest.param(
        lambda d: d["deletes"].append(dict(d["deletes"][0])), "duplicate path", id="duplicate-path"
    ),
    pytest.param(_set("deletes", None), "deletes", id="deletes-null"),
]


@pytest.mark.parametrize(("edit", "reason"), TOMBSTONE_CASES)
def test_tombstones_reject(edit: Edit, reason: str) -> None:
    doc = json.loads(SPEC_TOMBSTONES)
    edit(doc)
    _assert_rejected(decode_tombstones, json.dumps(doc).encode(), TOMBSTONE_KEY, reason)


REGISTRY_CASES = [
    pytest.param(_set("format", 3), "format 3 is newer", id="format-newer"),
    pytest.param(
        lambda d: d["devices"].update({"Old Phone": {"status": "active"}}),
        "device",
        id="bad-device-id",
    ),
    pytest.param(
        lambda d: d["devices"]["laptop"].update(status="sleeping"), "sleeping", id="bad-status"
    ),
    pytest.param(lambda d: d["devices"]["laptop"].pop("status"), "status", id="missing-status"),
    pytest.param(lambda d: d["devices"]["laptop"].update(mode="Two Way"), "mode", id="bad-mode"),
    pytest.param(_set("grace", "soon"), "grace", id="bad-grace"),
    pytest.param(
        lambda d: d.update(retention={"daily": "forever"}), "retention.daily", id="bad-rule"
    ),
    pytest.param(_set("retention", ["48h"]), "retention", id="retention-not-a-table"),
    pytest.param(
        lambda d: d["devices"]["laptop"].update(registered_at="1 May"),
        "registered_at",
        id="bad-time",
    ),
]


@pytest.mark.parametrize(("edit", "reason"), REGISTRY_CASES)
def test_registry_rejects(edit: Edit, reason: str) -> None:
    doc = json.loads(SPEC_REGISTRY)
    edit(doc)
    _assert_rejected(decode_registry, json.dumps(doc).encode(), REGISTRY_KEY, reason)


def test_encoding_refuses_objects_others_would_reject() -> None:
    bad = Delete(path="../x", type="dir", version={"a": 1})
    with pytest.raises(ValueError, match="invalid tombstones"):
        encode(
            TombstoneBatch(device_id="a", seq=1, created_at="2026-05-22T18:05:00Z", deletes=[bad])
        )
    with pytest.raises(ValueError, match="invalid head: snapshot and tree"):
        encode(Head(device_id="a", snapshot=None, tree=SHA_A, published_at="2026-05-22T18:05:00Z"))


def test_decoding_does_not_share_state_between_calls() -> None:
    first = decode_tombstones(SPEC_TOMBSTONES, "k")
    before = copy.deepcopy(first.deletes[0].version)
    first.deletes[0].version["laptop"] = 99
    assert decode_tombstones(SPEC_TOMBSTONES, "k").deletes[0].version == before


def test_a_registry_without_a_policy_reads_as_the_default_one_and_writes_it_out() -> None:
    registry = decode_registry(b'{"format": 2, "devices": {}}', REGISTRY_KEY)
    assert registry.retention == {"all": "48h", "hourly": "7d", "daily": "90d", "weekly": "2y"}
    assert registry.grace == "24h"
    assert b'"grace":"24h"' in encode(registry)


def test_a_retention_rule_added_later_is_ignored_not_refused() -> None:
    doc = b'{"format": 2, "retention": {"monthly": "whenever", "all": "3h"}}'
    assert decode_registry(doc, REGISTRY_KEY).retention["all"] == "3h"


SNAPSHOT_CASES = [
    pytest.param(_set("format", 3), "format 3 is newer", id="format-newer"),
    pytest.param(_set("format", 1), "format 1 is an earlier dropbeard's", id="format-older"),
    pytest.param(_set("device_id", "Lap Top"), "device_id", id="bad-device"),
    pytest.param(_set("snapshot", "2026-05-22"), "snapshot", id="bad-id"),
    pytest.param(_set("tree", "5e88"), "tree", id="short-tree"),
    pytest.param(_set("created_at", "yesterday"), "created_at", id="bad-time"),
    pytest.param(_set("files", -1), "files", id="negative-files"),
    pytest.param(_set("bytes", 2**63), "bytes", id="huge-bytes"),
    pytest.param(lambda d: d.pop("tree"), "tree", id="missing-tree"),
]


@pytest.mark.parametrize(("edit", "reason"), SNAPSHOT_CASES)
def test_snapshot_rejects(edit: Edit, reason: str) -> None:
    doc = json.loads(SPEC_SNAPSHOT)
    edit(doc)
    _assert_rejected(decode_snapshot, json.dumps(doc).encode(), SNAPSHOT_KEY, reason)


def test_the_spec_snapshot_decodes() -> None:
    snap = decode_snapshot(SPEC_SNAPSHOT.encode(), "snapshots/x.json")
    assert (snap.tree, snap.files) == ("5e88" * 16, 18231)


@pytest.mark.parametrize(("obj", "decode"), OBJECTS)
def test_round_trip(obj: msgspec.Struct, decode: Callable[[bytes, str], msgspec.Struct]) -> None:
    data = encode(obj)
    assert decode(data, "k") == obj
    assert encode(decode(data, "k")) == data
