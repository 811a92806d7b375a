"""Bucket objects: deterministic encoding, and decoding that refuses every malformed input
with one line naming the key (SPEC 1)."""

from __future__ import annotations

import copy
import json
import unicodedata
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.errors import FormatError
from dropbeard.core.model import (
    Delete,
    DeviceRecord,
    Entry,
    Head,
    Manifest,
    Registry,
    SeenMark,
    Snapshot,
    TombstoneBatch,
    decode_head,
    decode_manifest,
    decode_registry,
    decode_snapshot,
    decode_tombstones,
    encode,
    encode_manifest,
)

SHA_A = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # "test"
SHA_B = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # ""
MANIFEST_KEY = "roots/notes/devices/laptop/manifests/20260522T180500Z.json"
HEAD_KEY = "roots/notes/devices/laptop/head.json"
TOMBSTONE_KEY = "roots/notes/devices/laptop/tombstones/00000000000000000043.json"
REGISTRY_KEY = "roots/notes/devices/registry.json"

# The SPEC's examples (sections 1.1-1.4), digests and times filled in.
SPEC_MANIFEST = b"""{"format": 1, "root_id": "notes", "device_id": "laptop",
 "created_at": "2026-05-22T18:05:00Z",
 "entries": [
  {"path": "docs", "type": "dir", "mode": 493, "version": {"laptop": 3}},
  {"path": "docs/a.md", "type": "file", "size": 1234, "mode": 420,
   "mtime_ns": 1747936150000000000,
   "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
   "version": {"laptop": 7, "desktop": 2}},
  {"path": "current", "type": "symlink", "target": "docs/a.md", "mode": 511,
   "version": {"desktop": 1}}
 ]}"""
SPEC_HEAD = b"""{"format": 1, "device_id": "laptop", "manifest": "20260522T180500Z",
 "manifest_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 "published_at": "2026-05-22T18:05:00Z",
 "tombstone_seq": 42,
 "seen": {"desktop": {"manifest": "20260522T175900Z", "tombstone_seq": 17}}}"""
SPEC_TOMBSTONES = b"""{"format": 1, "device_id": "laptop", "seq": 43,
 "created_at": "2026-05-22T18:05:00Z",
 "deletes": [{"path": "docs/old.md", "type": "file",
              "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
              "version": {"laptop": 8, "desktop": 2}}]}"""
SPEC_REGISTRY = b"""{"format": 1, "devices": {"laptop": {"status": "active",
  "mode": "bidirectional", "registered_at": "2026-05-01T09:00:00Z"},
  "old-phone": {"status": "retired", "retired_at": "2026-05-20T12:00:00Z"}}}"""


def test_spec_examples_decode() -> None:
    m = decode_manifest(SPEC_MANIFEST, MANIFEST_KEY)
    assert [e.path for e in m.entries] == ["docs", "docs/a.md", "current"]
    assert m.entries[1].sha256 == SHA_A and m.entries[1].version == {"laptop": 7, "desktop": 2}
    assert m.entries[2].target == "docs/a.md"
    h = decode_head(SPEC_HEAD, HEAD_KEY)
    assert h.seen == {"desktop": SeenMark(manifest="20260522T175900Z", tombstone_seq=17)}
    t = decode_tombstones(SPEC_TOMBSTONES, TOMBSTONE_KEY)
    assert t.seq == 43 and t.deletes[0].path == "docs/old.md"
    r = decode_registry(SPEC_REGISTRY, REGISTRY_KEY)
    assert r.devices["old-phone"].status == "retired"


def _manifest(entries: list[Entry]) -> Manifest:
    return Manifest(
        root_id="notes", device_id="laptop", created_at="2026-05-22T18:05:00Z", entries=entries
    )


ENTRIES = [
    Entry(path="docs", type="dir", mode=0o755, version={"laptop": 3}),
    Entry(
        path="docs/a.md",
        type="file",
        mode=0o644,
        size=1234,
        mtime_ns=1747936150000000000,
        sha256=SHA_A,
        version={"laptop": 7, "desktop": 2},
    ),
    Entry(
        path="docs/b", type="file", mode=0o600, size=0, mtime_ns=-5, sha256=SHA_B, version={"d": 1}
    ),
    Entry(path="docs-old", type="dir", mode=0o700, version={"desktop": 4}),
    Entry(path="current", type="symlink", mode=0o777, target="docs/a.md", version={"desktop": 1}),
    Entry(
        path="été/文件 x.txt",
        type="file",
        mode=0o644,
        size=3,
        mtime_ns=0,
        sha256=SHA_B,
        version={"a": 2},
    ),
]
OBJECTS = [
    pytest.param(_manifest(sorted(ENTRIES, key=lambda e: e.path)), decode_manifest, id="manifest"),
    pytest.param(_manifest([]), decode_manifest, id="empty-manifest"),
    pytest.param(
        Head(
            device_id="laptop",
            manifest="20260522T180500Z",
            manifest_sha256=SHA_B,
            published_at="2026-05-22T18:05:00Z",
            tombstone_seq=42,
            seen={
                "desktop": SeenMark(manifest="20260522T175900Z", tombstone_seq=17),
                "new": SeenMark(),
            },
        ),
        decode_head,
        id="head",
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


@settings(max_examples=50, deadline=None)
@given(st.permutations(ENTRIES))
def test_same_tree_gives_same_bytes(entries: list[Entry]) -> None:
    reference = encode_manifest(_manifest(ENTRIES))
    assert encode_manifest(_manifest(entries)) == reference
    assert encode(_manifest(entries)) == reference
    # Version vectors built in another order are the same vectors.
    flipped = [
        msgspec.structs.replace(e, version=dict(reversed(e.version.items()))) for e in entries
    ]
    assert encode_manifest(_manifest(flipped)) == reference


def test_entries_are_written_in_utf8_byte_order() -> None:
    paths = ["b", "a-c", "a/b", "a", "z", "é", "\U0001f600", "\uff5e"]
    entries = [Entry(path=p, type="dir", mode=0o755, version={"d": 1}) for p in paths]
    written = [e["path"] for e in json.loads(encode_manifest(_manifest(entries)))["entries"]]
    assert written == sorted(paths, key=lambda p: p.encode())


def test_unknown_fields_are_ignored() -> None:
    doc = json.loads(SPEC_MANIFEST)
    doc["compression"] = "none"
    doc["entries"][1]["xattrs"] = {"user.tag": "x"}
    assert decode_manifest(json.dumps(doc).encode(), "k") == decode_manifest(SPEC_MANIFEST, "k")
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


# --- rejection ----------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], object]


def _entry(i: int, **fields: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc["entries"][i].update(fields)

    return edit


def _drop(i: int, field: str) -> Edit:
    return lambda doc: doc["entries"][i].pop(field)


def _path(p: str) -> Edit:
    return _entry(1, path=p)


MANIFEST_CASES = [
    pytest.param(_path("../x"), "'..' segment", id="traversal"),
    pytest.param(_path("a/../b"), "'..' segment", id="inner-traversal"),
    pytest.param(_path("./a"), "'.' segment", id="dot-segment"),
    pytest.param(_path("/etc/x"), "absolute", id="absolute"),
    pytest.param(_path(".dropbear/root.toml"), ".dropbear", id="under-dropbear"),
    pytest.param(_path(".dropbear"), ".dropbear", id="dropbear-itself"),
    pytest.param(_path(".DropBear/state.sqlite"), ".dropbear", id="dropbear-other-case"),
    pytest.param(_path(""), "path is empty", id="empty-path"),
    pytest.param(_path("a//b"), "empty segment", id="double-slash"),
    pytest.param(_path("docs/"), "ends with '/'", id="trailing-slash"),
    pytest.param(_path("a\x00b"), "NUL", id="nul"),
    pytest.param(_path(unicodedata.normalize("NFD", "café")), "NFC", id="non-nfc"),
    pytest.param(_path("x" * 256), "255 bytes", id="long-name"),
    pytest.param(_path("/".join(["x" * 200] * 21)), "4096 bytes", id="long-path"),
    pytest.param(_entry(1, sha256=SHA_A.upper()), "SHA-256", id="digest-uppercase"),
    pytest.param(_entry(1, sha256=SHA_A[:-1]), "SHA-256", id="digest-short"),
    pytest.param(_entry(1, sha256="g" * 64), "SHA-256", id="digest-non-hex"),
    pytest.param(
        lambda d: d.update(format=2),
        "format 2 is newer than this dropbeard understands (1); upgrade dropbeard",
        id="format-newer",
    ),
    pytest.param(lambda d: d.update(format=0), "format 0", id="format-zero"),
    pytest.param(lambda d: d.update(format="1"), "format", id="format-string"),
    pytest.param(lambda d: d.update(format=1.5), "format", id="format-float"),
    pytest.param(lambda d: d.pop("format"), "format", id="format-missing"),
    pytest.param(lambda d: d.update(device_id="Laptop"), "device_id", id="bad-device-id"),
    pytest.param(lambda d: d.update(root_id="-notes"), "root_id", id="bad-root-id"),
    pytest.param(_entry(1, version={"Desk Top": 1}), "device", id="bad-version-device"),
    pytest.param(_entry(1, version={}), "version is empty", id="empty-version"),
    pytest.param(_entry(1, version={"laptop": 0}), "counter", id="zero-counter"),
    pytest.param(_entry(1, version={"laptop": 2**63}), "counter", id="huge-counter"),
    pytest.param(_entry(1, version={"laptop": "7"}), "version", id="counter-string"),
    pytest.param(_entry(1, size=-1), "size is -1", id="negative-size"),
    pytest.param(_drop(1, "sha256"), "sha256", id="file-without-sha256"),
    pytest.param(_drop(1, "size"), "size", id="file-without-size"),
    pytest.param(_drop(1, "mtime_ns"), "mtime_ns", id="file-without-mtime"),
    pytest.param(_entry(1, mtime_ns=1.5), "mtime_ns", id="float-mtime"),
    pytest.param(_entry(1, target="x"), "target", id="file-with-target"),
    pytest.param(_drop(2, "target"), "target", id="symlink-without-target"),
    pytest.param(_entry(2, target=""), "target", id="symlink-empty-target"),
    pytest.param(_entry(2, target="a\x00b"), "NUL", id="symlink-target-nul"),
    pytest.param(_entry(2, sha256=SHA_A), "sha256", id="symlink-with-sha256"),
    pytest.param(_entry(0, sha256=SHA_A), "sha256", id="dir-with-sha256"),
    pytest.param(_entry(0, size=3), "size", id="dir-with-size"),
    pytest.param(_entry(1, mode=0o10000), "mode", id="mode-too-big"),
    pytest.param(_entry(1, mode=-1), "mode", id="mode-negative"),
    pytest.param(_entry(1, type="socket"), "socket", id="unknown-type"),
    pytest.param(_entry(2, path="docs"), "duplicate path", id="duplicate-path"),
    pytest.param(
        _entry(0, type="file", size=1, mtime_ns=0, sha256=SHA_A),
        "is under 'docs', a file",
        id="file-holds-file",
    ),
    pytest.param(
        lambda d: d.update(created_at="2026-05-22 18:05:00"), "created_at", id="bad-created-at"
    ),
    pytest.param(
        lambda d: d.update(created_at="2026-02-30T00:00:00Z"), "created_at", id="impossible-date"
    ),
    pytest.param(_entry(1, size="1234"), "got `str` - at `$.entries[1].size`", id="wrong-type"),
    pytest.param(lambda d: d.update(entries={"docs": {}}), "entries", id="entries-not-list"),
    pytest.param(lambda d: d.pop("root_id"), "root_id", id="missing-field"),
]


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


@pytest.mark.parametrize(("edit", "reason"), MANIFEST_CASES)
def test_manifest_rejects(edit: Edit, reason: str) -> None:
    doc = json.loads(SPEC_MANIFEST)
    edit(doc)
    _assert_rejected(decode_manifest, json.dumps(doc).encode(), MANIFEST_KEY, reason)


def test_rejection_names_the_entry() -> None:
    doc = json.loads(SPEC_MANIFEST)
    doc["entries"].append({"path": "../x", "type": "dir", "mode": 493, "version": {"a": 1}})
    with pytest.raises(FormatError) as info:
        decode_manifest(json.dumps(doc).encode(), MANIFEST_KEY)
    assert (
        str(info.value)
        == f"invalid manifest {MANIFEST_KEY}: entry 3: path '../x' has a '..' segment"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"not json", "JSON is malformed", id="not-json"),
        pytest.param(b"", "truncated", id="empty-bytes"),
        pytest.param(b"[1, 2]", "expected `object`, got `array`", id="array"),
        pytest.param(b"null", "expected `object`, got `null`", id="null"),
        pytest.param(SPEC_MANIFEST[:200], "truncated", id="truncated"),
        pytest.param(b"\xff\xfe{}", "malformed", id="not-utf8"),
        pytest.param(
            SPEC_MANIFEST.replace(b"docs/a.md", b"docs/\n.md", 1), "malformed", id="raw-newline"
        ),
    ],
)
def test_manifest_rejects_bytes(data: bytes, reason: str) -> None:
    _assert_rejected(decode_manifest, data, MANIFEST_KEY, reason)


def test_newline_in_a_path_is_escaped_in_the_message() -> None:
    doc = json.loads(SPEC_MANIFEST)
    doc["entries"][1]["path"] = "../x\ny"
    _assert_rejected(decode_manifest, json.dumps(doc).encode(), MANIFEST_KEY, r"'../x\ny'")


def test_message_never_holds_the_whole_blob() -> None:
    doc = json.loads(SPEC_MANIFEST)
    doc["entries"] += [
        {"path": f"f{i}-" + "x" * 200, "type": "dir", "mode": 493, "version": {"a": 1}}
        for i in range(1000)
    ]
    doc["entries"][-1]["path"] = "y" * 300 + "/../z"
    _assert_rejected(decode_manifest, json.dumps(doc).encode(), MANIFEST_KEY, "entry 1002")
    doc["entries"][-1]["type"] = "z" * 5000
    _assert_rejected(decode_manifest, json.dumps(doc).encode(), MANIFEST_KEY, "enum")


def _set(field: str, value: object) -> Edit:
    return lambda doc: doc.update({field: value})


HEAD_CASES = [
    pytest.param(_set("format", 2), "format 2 is newer", id="format-newer"),
    pytest.param(_set("device_id", "lap top"), "device_id", id="bad-device-id"),
    pytest.param(_set("manifest", "2026-05-22T18:05:00Z"), "manifest", id="bad-manifest-id"),
    pytest.param(_set("manifest", "20260522T250500Z"), "manifest", id="impossible-manifest-id"),
    pytest.param(_set("manifest_sha256", SHA_A.upper()), "manifest_sha256", id="bad-digest"),
    pytest.param(_set("published_at", "yesterday"), "published_at", id="bad-published-at"),
    pytest.param(_set("tombstone_seq", -1), "tombstone_seq", id="negative-seq"),
    pytest.param(_set("seen", {"BAD": {}}), "seen device", id="seen-bad-device"),
    pytest.param(
        _set("seen", {"d": {"manifest": "x"}}), "seen[d].manifest", id="seen-bad-manifest"
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
    pytest.param(_set("format", 2), "format 2 is newer", id="format-newer"),
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
    bad = Entry(path="../x", type="dir", mode=0o755, version={"a": 1})
    with pytest.raises(ValueError, match="invalid manifest"):
        encode_manifest(_manifest([bad]))
    with pytest.raises(ValueError, match="invalid tombstones"):
        encode(TombstoneBatch(device_id="a", seq=-1, created_at="2026-05-22T18:05:00Z", deletes=[]))


def test_decoding_does_not_share_state_between_calls() -> None:
    doc = json.loads(SPEC_MANIFEST)
    data = json.dumps(doc).encode()
    first = decode_manifest(data, "k")
    before = copy.deepcopy(first.entries[1].version)
    first.entries[1].version["laptop"] = 99
    assert decode_manifest(data, "k").entries[1].version == before


SPEC_SNAPSHOT = (
    '{"format": 2, "device_id": "laptop", "snapshot": "20260522T180500Z", "tree": "'
    + "5e88" * 16
    + '", "created_at": "2026-05-22T18:05:00Z", "files": 18231, "bytes": 5120000000}'
)


def test_a_registry_without_a_policy_reads_as_the_default_one_and_writes_it_out() -> None:
    registry = decode_registry(b'{"format": 1, "devices": {}}', REGISTRY_KEY)
    assert registry.retention == {"all": "48h", "hourly": "7d", "daily": "90d", "weekly": "2y"}
    assert registry.grace == "24h"
    assert b'"grace":"24h"' in encode(registry)


def test_a_retention_rule_added_later_is_ignored_not_refused() -> None:
    doc = b'{"format": 1, "retention": {"monthly": "whenever", "all": "3h"}}'
    assert decode_registry(doc, REGISTRY_KEY).retention["all"] == "3h"


SNAPSHOT_CASES = [
    pytest.param(_set("format", 3), "format 3 is newer", id="format-newer"),
    pytest.param(_set("format", 1), "format 1 is older", id="format-older"),
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
    _assert_rejected(decode_snapshot, json.dumps(doc).encode(), "snapshots/x.json", reason)


def test_the_spec_snapshot_decodes() -> None:
    snap = decode_snapshot(SPEC_SNAPSHOT.encode(), "snapshots/x.json")
    assert (snap.tree, snap.files) == ("5e88" * 16, 18231)


@pytest.mark.parametrize(("obj", "decode"), OBJECTS)
def test_round_trip(obj: msgspec.Struct, decode: Callable[[bytes, str], msgspec.Struct]) -> None:
    data = encode(obj)
    assert decode(data, "k") == obj
    assert encode(decode(data, "k")) == data
