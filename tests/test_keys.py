"""The bucket key layout (SPEC 1): keys other devices and a 50-line script can find."""

from __future__ import annotations

import pytest

from dropbeard.core.keys import RootKeys

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
keys = RootKeys("notes")


def test_layout_matches_the_spec() -> None:
    assert keys.prefix == "roots/notes/"
    assert keys.blobs_prefix == "roots/notes/blobs/"
    assert keys.blob(EMPTY) == f"roots/notes/blobs/e3/b0/{EMPTY}"
    assert keys.devices_prefix == "roots/notes/devices/"
    assert keys.registry == "roots/notes/devices/registry.json"
    assert keys.device_prefix("laptop") == "roots/notes/devices/laptop/"
    assert keys.head("laptop") == "roots/notes/devices/laptop/head.json"
    assert keys.snapshots_prefix("laptop") == "roots/notes/devices/laptop/snapshots/"
    assert (
        keys.snapshot("laptop", "20260522T180500Z")
        == "roots/notes/devices/laptop/snapshots/20260522T180500Z.json"
    )
    assert keys.tombstones_prefix("laptop") == "roots/notes/devices/laptop/tombstones/"
    assert (
        keys.tombstone("laptop", 42)
        == "roots/notes/devices/laptop/tombstones/00000000000000000042.json"
    )


def test_tree_keys_are_sharded_like_blobs_and_parse_back() -> None:
    assert keys.trees_prefix == "roots/notes/trees/"
    assert keys.tree(EMPTY) == f"roots/notes/trees/e3/b0/{EMPTY}"
    assert keys.tree_sha256_of(keys.tree(EMPTY)) == EMPTY


def test_tombstone_keys_sort_in_seq_order() -> None:
    seqs = [0, 1, 9, 10, 99, 100, 12345, 10**19]
    assert sorted(keys.tombstone("d", s) for s in seqs) == [keys.tombstone("d", s) for s in seqs]


def test_snapshot_keys_sort_in_time_order() -> None:
    ids = ["20251231T235959Z", "20260101T000000Z", "20260522T180500Z", "20260522T180501Z"]
    assert sorted(keys.snapshot("d", i) for i in reversed(ids)) == [
        keys.snapshot("d", i) for i in ids
    ]


def test_parsers_invert_the_builders() -> None:
    assert keys.snapshot_id_of(keys.snapshot("old-phone", "20260522T180500Z")) == (
        "20260522T180500Z"
    )
    assert keys.seq_of(keys.tombstone("old-phone", 42)) == 42
    assert keys.sha256_of(keys.blob(EMPTY)) == EMPTY
    assert keys.device_of(keys.head("old-phone")) == "old-phone"
    assert keys.device_of(keys.device_prefix("old-phone")) == "old-phone"
    assert keys.device_of(keys.snapshot("d.1", "20260522T180500Z")) == "d.1"
    assert keys.device_of(keys.registry) is None


@pytest.mark.parametrize(
    ("build", "arg"),
    [
        pytest.param(lambda a: RootKeys(a), "Notes", id="root-uppercase"),
        pytest.param(lambda a: RootKeys(a), "../x", id="root-traversal"),
        pytest.param(lambda a: RootKeys(a), "", id="root-empty"),
        pytest.param(lambda a: keys.blob(a), EMPTY.upper(), id="blob-uppercase"),
        pytest.param(lambda a: keys.blob(a), EMPTY[:63], id="blob-short"),
        pytest.param(lambda a: keys.blob(a), "../" + EMPTY[3:], id="blob-traversal"),
        pytest.param(lambda a: keys.tree(a), EMPTY.upper(), id="tree-uppercase"),
        pytest.param(lambda a: keys.tree(a), EMPTY + "0", id="tree-long"),
        pytest.param(lambda a: keys.head(a), "a/b", id="device-slash"),
        pytest.param(lambda a: keys.head(a), "-dev", id="device-leading-hyphen"),
        pytest.param(lambda a: keys.snapshot("d", a), "x", id="snapshot-id"),
        pytest.param(lambda a: keys.snapshot("d", a), "../../head", id="snapshot-id-traversal"),
        pytest.param(lambda a: keys.tombstone("d", int(a)), "-1", id="seq-negative"),
        pytest.param(lambda a: keys.tombstone("d", int(a)), str(10**20), id="seq-too-big"),
    ],
)
def test_builders_refuse_invalid_parts(build: object, arg: str) -> None:
    with pytest.raises(ValueError):
        build(arg)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("parse", "key"),
    [
        pytest.param(
            "snapshot_id_of",
            "roots/other/devices/d/snapshots/20260522T180500Z.json",
            id="snapshot-other-root",
        ),
        pytest.param(
            "snapshot_id_of",
            "roots/notes/devices/d/snapshots/20260522T180500Z",
            id="snapshot-no-json",
        ),
        pytest.param(
            "snapshot_id_of", "roots/notes/devices/d/snapshots/latest.json", id="snapshot-bad-id"
        ),
        pytest.param(
            "snapshot_id_of",
            "roots/notes/devices/d/tombstones/00000000000000000001.json",
            id="snapshot-wrong-folder",
        ),
        pytest.param(
            "snapshot_id_of",
            "roots/notes/devices/D/snapshots/20260522T180500Z.json",
            id="snapshot-bad-device",
        ),
        pytest.param(
            "snapshot_id_of",
            "roots/notes/devices/d/snapshots/x/20260522T180500Z.json",
            id="snapshot-nested",
        ),
        pytest.param("seq_of", "roots/notes/devices/d/tombstones/42.json", id="seq-not-padded"),
        pytest.param(
            "seq_of",
            "roots/notes/devices/d/tombstones/0000000000000000004x.json",
            id="seq-not-digits",
        ),
        pytest.param("seq_of", "roots/notes/devices/d/head.json", id="seq-head"),
        pytest.param("device_of", "roots/notes/blobs/e3/b0/x", id="device-blob"),
        pytest.param("device_of", "roots/notes/devices/stray.json", id="device-stray-file"),
        pytest.param("device_of", "roots/notes/devices/Bad Id/head.json", id="device-invalid"),
        pytest.param("sha256_of", f"roots/notes/blobs/e3/b1/{EMPTY}", id="blob-wrong-shard"),
        pytest.param("sha256_of", f"roots/notes/blobs/{EMPTY}", id="blob-unsharded"),
        pytest.param("sha256_of", "roots/notes/blobs/e3/b0/e3b0", id="blob-short"),
        pytest.param("sha256_of", f"roots/notes/trees/e3/b0/{EMPTY}", id="blob-is-a-tree"),
        pytest.param("tree_sha256_of", f"roots/notes/trees/e3/b1/{EMPTY}", id="tree-wrong-shard"),
        pytest.param("tree_sha256_of", f"roots/notes/blobs/e3/b0/{EMPTY}", id="tree-is-a-blob"),
        pytest.param("tree_sha256_of", f"roots/other/trees/e3/b0/{EMPTY}", id="tree-other-root"),
    ],
)
def test_parsers_refuse_keys_outside_the_layout(parse: str, key: str) -> None:
    with pytest.raises(ValueError):
        getattr(keys, parse)(key)


def test_the_probe_key_is_in_the_device_folder_and_refuses_non_hex_tokens() -> None:
    keys = RootKeys("notes")
    assert keys.probe("laptop", "00ff") == "roots/notes/devices/laptop/probe-00ff.tmp"
    assert keys.device_of(keys.probe("laptop", "ab")) == "laptop"
    for token in ("", "AB", "x1", "../x", "0" * 33):
        with pytest.raises(ValueError):
            keys.probe("laptop", token)


def test_snapshot_keys_follow_the_spec_and_parse_back() -> None:
    key = keys.snapshot("laptop", "20260522T180500Z")
    assert key == "roots/notes/devices/laptop/snapshots/20260522T180500Z.json"
    assert keys.snapshots_prefix("laptop") == "roots/notes/devices/laptop/snapshots/"
    assert keys.snapshot_id_of(key) == "20260522T180500Z"
    for bad in (
        "roots/notes/devices/laptop/snapshots/latest.json",
        "roots/notes/devices/laptop/manifests/20260522T180500Z.json",
        "roots/notes/devices/laptop/snapshots/20260522T180500Z.json/x",
    ):
        with pytest.raises(ValueError):
            keys.snapshot_id_of(bad)
