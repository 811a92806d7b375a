"""Tree nodes (SPEC 1.1): canonical bytes every device agrees on, and decoding that
refuses every malformed or hostile node with one line naming its key."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropbeard.core import tree as tree_module
from dropbeard.core.chunking import MAX_CHUNK, Chunk
from dropbeard.core.errors import FormatError, IntegrityError
from dropbeard.core.keys import RootKeys
from dropbeard.core.tree import (
    MAX_NODE_BYTES,
    Node,
    Page,
    TreeEntry,
    check_root,
    decode_node,
    entries_node,
    index_node,
    node_key,
)
from tests.treegen import dir_entry, file_entry, leaf_entries, link_entry, names, sha

MIB16 = MAX_CHUNK  # 16 MiB: larger files are chunked, and no chunk is larger
SHA_A = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
KEYS = RootKeys("notes")


def spec_example() -> list[TreeEntry]:
    """SPEC 1.1's example node, digests filled in."""
    return [
        TreeEntry(
            name="a.md",
            type="file",
            size=1234,
            mode=420,
            mtime_ns=1747936150000000000,
            sha256=SHA_A,
            version={"laptop": 7, "desktop": 2},
        ),
        TreeEntry(
            name="current", type="symlink", target="docs/a.md", mode=511, version={"desktop": 1}
        ),
        TreeEntry(name="docs", type="dir", mode=493, version={"laptop": 3}, tree=sha("docs node")),
    ]


def test_a_tiny_node_has_exactly_the_canonical_bytes() -> None:
    data = entries_node(reversed(spec_example()))
    assert data == (
        b'{"format":2,"entries":['
        b'{"name":"a.md","type":"file","size":1234,"mode":420,'
        b'"mtime_ns":1747936150000000000,"sha256":"' + SHA_A.encode() + b'",'
        b'"version":{"desktop":2,"laptop":7}},'
        b'{"name":"current","type":"symlink","target":"docs/a.md","mode":511,'
        b'"version":{"desktop":1}},'
        b'{"name":"docs","type":"dir","mode":493,"version":{"laptop":3},'
        b'"tree":"' + sha("docs node").encode() + b'"}]}'
    )
    assert node_key(data) == "32bd4a8028a3b522d94d920fbb86ea1a819ba1758a636a736d95314e0e948da5"


def test_an_empty_directory_and_an_index_have_the_spec_shapes() -> None:
    assert entries_node([]) == b'{"format":2,"entries":[]}'
    page = Page("a", sha("p"))
    assert index_node([page]) == b'{"format":2,"pages":[{"first":"a","tree":"%s"}]}' % (
        sha("p").encode()
    )


def test_chunks_are_pairs_in_the_entry_after_sha256() -> None:
    big = TreeEntry(
        name="big",
        type="file",
        size=MIB16 + 3,
        mode=0o644,
        mtime_ns=0,
        sha256=SHA_A,
        chunks=[Chunk(sha("1"), MIB16), Chunk(sha("2"), 3)],
        version={"pc": 1},
    )
    text = entries_node([big]).decode()
    pairs = f'[["{sha("1")}",{MIB16}],["{sha("2")}",3]]'
    assert f'"sha256":"{SHA_A}","chunks":{pairs},"version"' in text
    data = text.encode()
    assert decode_node(data, node_key(data), "k").entries == [big]


def test_a_small_file_another_writer_cut_into_chunks_decodes() -> None:
    """A reader needs only the list (SPEC 1.6), whatever size the writer chose to cut."""
    small = TreeEntry(
        name="small",
        type="file",
        size=8,
        mode=0o644,
        mtime_ns=0,
        sha256=SHA_A,
        chunks=[Chunk(sha("1"), 5), Chunk(sha("2"), 3)],
        version={"pc": 1},
    )
    data = entries_node([small])
    assert decode_node(data, node_key(data), "k").entries == [small]


@given(st.lists(names, unique=True, max_size=12), st.randoms())
def test_the_same_listing_has_the_same_key_in_any_insertion_order(
    listing: list[str], random: Any
) -> None:
    entries = [file_entry(n, n) for n in listing]
    shuffled = list(entries)
    random.shuffle(shuffled)
    assert node_key(entries_node(entries)) == node_key(entries_node(shuffled))


@given(
    st.lists(names, unique=True, max_size=12).flatmap(lambda ns: st.tuples(*map(leaf_entries, ns)))
)
def test_decoding_what_was_encoded_gives_it_back(entries: tuple[TreeEntry, ...]) -> None:
    data = entries_node(entries)
    node = decode_node(data, node_key(data), "k")
    assert node.entries == sorted(entries, key=lambda e: e.name.encode())


def test_names_sort_by_utf8_bytes() -> None:
    # U+FF21 sorts before U+1F600 as UTF-8 (and as code points), after it as UTF-16
    data = entries_node([file_entry("\U0001f600"), file_entry("\uff21"), file_entry("b")])
    node = decode_node(data, node_key(data), "k")
    assert [e.name for e in node.entries or ()] == ["b", "\uff21", "\U0001f600"]


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([file_entry("a"), file_entry("a")], id="duplicate"),
        pytest.param([file_entry("a/b")], id="slash"),
        pytest.param([file_entry("..")], id="dotdot"),
        pytest.param([dir_entry("d")], id="dir-without-tree"),
        pytest.param([msgspec.structs.replace(file_entry("a"), version={"Bad": 1})], id="device"),
        pytest.param([msgspec.structs.replace(file_entry("a"), mtime_ns=2**63)], id="mtime"),
        pytest.param([msgspec.structs.replace(file_entry("a"), mode=0o1777)], id="sticky"),
    ],
)
def test_a_writer_refuses_a_node_readers_would_refuse(entries: list[TreeEntry]) -> None:
    with pytest.raises(ValueError, match="refusing to write an invalid tree node"):
        entries_node(entries)


# --- hostile bytes ---------------------------------------------------------------------


def _node(*entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"format": 2, "entries": list(entries), **extra}


def _file(name: str = "a", **fields: Any) -> dict[str, Any]:
    entry = {
        "name": name,
        "type": "file",
        "size": 1,
        "mode": 420,
        "mtime_ns": 5,
        "sha256": SHA_A,
        "version": {"laptop": 1},
    }
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not None}


def _dir(name: str = "d", **fields: Any) -> dict[str, Any]:
    entry = {"name": name, "type": "dir", "mode": 493, "version": {"pc": 1}, "tree": SHA_A}
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not None}


def _link(name: str = "l", **fields: Any) -> dict[str, Any]:
    entry = {"name": name, "type": "symlink", "target": "x", "mode": 511, "version": {"pc": 1}}
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not None}


HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    "name-slash": (_node(_file("a/b")), "contains '/'"),
    "name-dotdot": (_node(_file("..")), "'..' is not allowed"),
    "name-dot": (_node(_file(".")), "'.' is not allowed"),
    "name-empty": (_node(_file("")), "'' is not allowed"),
    "name-nul": (_node(_file("a\x00b")), "NUL"),
    "name-nfd": (_node(_file(unicodedata.normalize("NFD", "é"))), "not NFC"),
    "name-too-long": (_node(_file("x" * 256)), "longer than 255 bytes"),
    "duplicate": (_node(_file("a"), _file("a")), "duplicate name"),
    "out-of-order": (_node(_file("b"), _file("a")), "out of order"),
    "file-no-sha": (_node(_file(sha256=None)), "a file needs"),
    "file-no-size": (_node(_file(size=None)), "a file needs"),
    "file-with-tree": (_node(_file(tree=SHA_A)), "a file has no target or tree"),
    "dir-no-tree": (_node(_dir(tree=None)), "a dir needs a tree"),
    "dir-with-size": (_node(_dir(size=3)), "a dir has no size"),
    "dir-with-target": (_node(_dir(target="x")), "a dir has no target"),
    "link-with-tree": (_node(_link(tree=SHA_A)), "a symlink has no tree"),
    "link-no-target": (_node(_link(target=None)), "needs a target"),
    "link-nul-target": (_node(_link(target="a\x00")), "needs a target"),
    "unknown-type": (_node(_file(type="fifo")), "type"),
    "sha-uppercase": (
        _node(_file(sha256=SHA_A.upper())),
        "sha256 '9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08' is not a",
    ),
    "tree-short": (_node(_dir(tree="abc")), "tree 'abc' is not a lowercase hex SHA-256"),
    "chunk-sha": (_node(_file(size=MIB16 + 1, chunks=[["x", MIB16 + 1]])), "chunk 0: 'x' is not"),
    "size-negative": (_node(_file(size=-1)), "size"),
    "size-huge": (_node(_file(size=2**63)), "size"),
    "mtime-huge": (_node(_file(mtime_ns=2**64)), "mtime_ns"),
    "mode-setuid": (_node(_file(mode=0o4755)), "mode"),
    "version-empty": (_node(_file(version={})), "version"),
    "version-device": (_node(_file(version={"Laptop": 1})), "device 'Laptop' is not a valid id"),
    "version-zero": (_node(_file(version={"pc": 0})), "version"),
    "version-float": (_node(_file(version={"pc": 1.5})), "version"),
    "chunks-sum": (
        _node(_file(size=MIB16 + 5, chunks=[[SHA_A, MIB16], [SHA_A, MIB16]])),
        f"add up to {2 * MIB16} bytes",
    ),
    "chunks-zero": (_node(_file(size=MIB16 + 1, chunks=[[SHA_A, 0]])), "chunk 0 has 0 bytes"),
    "chunk-too-big": (_node(_file(size=MIB16 + 1, chunks=[[SHA_A, MIB16 + 1]])), "1 to"),
    "chunks-repeat": (
        _node(_file(size=MIB16 + 5, chunks=[[SHA_A, MIB16], [SHA_A, 5]])),
        "repeats an earlier chunk's digest",
    ),
    "chunks-empty": (_node(_file(size=0, chunks=[])), "chunks is empty"),
    "chunks-on-dir": (_node(_dir(chunks=[[SHA_A, 1]])), "a dir has no chunks"),
    "both": (_node(_file(), pages=[{"first": "a", "tree": SHA_A}]), "either entries or pages"),
    "neither": ({"format": 2}, "either entries or pages"),
    "no-pages": ({"format": 2, "pages": []}, "lists no pages"),
    "pages-order": (
        {"format": 2, "pages": [{"first": "b", "tree": SHA_A}, {"first": "a", "tree": SHA_A}]},
        "pages out of order",
    ),
    "page-first-slash": ({"format": 2, "pages": [{"first": "a/b", "tree": SHA_A}]}, "'/'"),
    "page-tree": ({"format": 2, "pages": [{"first": "a", "tree": "x"}]}, "page 0 'a': tree 'x'"),
    "format-1-manifest": (
        {"format": 1, "root_id": "n", "device_id": "d", "created_at": "x", "entries": []},
        "format 1 is not format 2",
    ),
    "format-1-node": ({"format": 1, "entries": []}, "format 1 is not format 2"),
    "format-3": ({"format": 3, "entries": [], "x": {"y": 1}}, "format 3 is newer than this"),
    "format-string": ({"format": "2", "entries": []}, "format"),
    "not-an-object": ([1, 2], "object"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_node_is_refused_with_one_line_naming_its_key(case: str) -> None:
    obj, reason = HOSTILE[case]
    data = json.dumps(obj).encode()
    key = KEYS.tree(node_key(data))
    with pytest.raises(FormatError) as caught:
        decode_node(data, node_key(data), key)
    message = str(caught.value)
    assert message.startswith(f"invalid tree {key}: "), message
    assert reason in message
    assert "\n" not in message


def test_unknown_fields_are_ignored() -> None:
    data = json.dumps(_node(_file(color="red"), comment="hello")).encode()
    node = decode_node(data, node_key(data), "k")
    assert node.entries is not None and node.entries[0].name == "a"


def test_bytes_that_do_not_match_the_key_are_an_integrity_error() -> None:
    data = entries_node([file_entry("a")])
    other = sha("something else")
    with pytest.raises(IntegrityError, match=f"reading tree {KEYS.tree(other)}: .*not its key"):
        decode_node(data, other, KEYS.tree(other))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-too-deeply"),
        pytest.param(b'{"format":2,"entries":[' + b"[" * 5000, id="truncated"),
    ],
)
def test_bytes_that_are_not_a_node_are_refused(data: bytes) -> None:
    with pytest.raises(FormatError, match=r"^invalid tree k: [^\n]+$"):
        decode_node(data, node_key(data), "k")


def test_an_absurdly_large_node_is_refused_before_it_is_hashed_or_parsed() -> None:
    data = b" " * (MAX_NODE_BYTES + 1)
    with pytest.raises(FormatError, match="more than 8388608"):
        decode_node(data, sha("whatever"), "k")


def test_a_node_listing_too_many_items_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree_module, "MAX_NODE_ITEMS", 3)
    data = json.dumps(_node(*(_file(n) for n in "abcd"))).encode()
    with pytest.raises(FormatError, match="4 items, more than 3"):
        decode_node(data, node_key(data), "k")


def test_dropbear_is_refused_in_the_root_node_only() -> None:
    hidden = msgspec.structs.replace(dir_entry(".DropBear"), tree=SHA_A)
    data = entries_node([hidden, link_entry("x")])
    node = decode_node(data, node_key(data), "k")  # fine below the root
    with pytest.raises(FormatError, match=r"the root lists '\.DropBear'"):
        check_root(node, "k")
    fine = entries_node([link_entry(".dropbearx")])
    check_root(decode_node(fine, node_key(fine), "k"), "k")


def test_node_is_a_struct_with_format_first() -> None:
    assert Node.__struct_fields__[0] == "format"
    assert TreeEntry.__struct_fields__ == (
        "name",
        "type",
        "size",
        "target",
        "mode",
        "mtime_ns",
        "sha256",
        "chunks",
        "version",
        "tree",
    )
