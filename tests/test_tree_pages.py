"""Large directories in pages (SPEC 1.1): where pages are cut, index levels, and a
rebuild that rewrites one page per level (two when a cut moves) and otherwise equals a
build from scratch."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.tree import Page, TreeEntry
from dropbeard.core.treepages import (
    FANOUT,
    MAX_PAGE,
    DirectoryBuild,
    DirectoryBuilder,
    apply_changes,
    build_directory,
    index_levels,
    is_cut,
)
from tests.treegen import decode, file_entry, leaf_pages, rebuild, sha, shape_of


def listing(count: int, prefix: str = "n") -> list[TreeEntry]:
    return [file_entry(f"{prefix}{i}") for i in range(count)]


def uncut(count: int) -> list[TreeEntry]:
    """`count` entries in a row none of which is followed by a cut (`same0000`…)."""
    names = (f"same{i:05}" for i in range(10 * count))
    return [file_entry(n) for n in names if not is_cut(n)][:count]


def stored(built: DirectoryBuild) -> dict[str, bytes]:
    nodes = dict(built.nodes)
    assert nodes[built.key] == built.top
    return nodes


def test_the_cut_rule_reads_the_first_16_bits_of_the_names_sha256() -> None:
    # sha256("n34") starts 01c7, "n436" 00aa, "n1579" 0214: below 0x0800; "n71" 0842 is not
    assert hashlib.sha256(b"n34").hexdigest().startswith("01c7")
    assert is_cut("n34") and is_cut("n436") and is_cut("n1579")
    assert not is_cut("n71")
    assert not is_cut("n0")


def test_up_to_fanout_entries_is_one_node_and_one_more_an_index() -> None:
    flat = build_directory(listing(FANOUT))
    assert decode(stored(flat), flat.key).entries == sorted(listing(FANOUT), key=lambda e: e.name)
    assert len(flat.nodes) == 1
    paged = build_directory(listing(FANOUT + 1))
    top = decode(stored(paged), paged.key)
    assert top.pages is not None and top.entries is None


def test_pages_end_exactly_after_cut_names_or_at_max_page_entries() -> None:
    entries = listing(3000) + uncut(1100)
    built = build_directory(entries)
    pages = leaf_pages(stored(built), built.key)
    flat = [e for page in pages for e in page]
    assert flat == sorted(entries, key=lambda e: e.name)
    for page in pages[:-1]:
        assert len(page) == MAX_PAGE or is_cut(page[-1].name)
    for page in pages:
        assert len(page) <= MAX_PAGE
        assert not any(is_cut(e.name) for e in page[:-1])
    assert any(len(page) == MAX_PAGE for page in pages)  # "same…" has a run without cuts


def test_an_index_of_more_than_fanout_pages_gets_index_levels_until_the_top_holds_fanout() -> None:
    pages = [Page(f"p{i:06}", sha(str(i))) for i in range(20_000)]  # 625 index pages, 20 above
    built = index_levels(pages)
    nodes = stored(built)
    levels = 0
    level = [built.key]
    while True:
        children = [p for k in level for p in decode(nodes, k).pages or []]
        levels += 1
        if children[0].tree not in nodes:  # reached the leaf pages
            break
        level = [p.tree for p in children]
    top = decode(nodes, built.key).pages or []
    assert len(top) <= FANOUT and levels == 3
    assert children == pages


def test_the_streaming_builder_hands_back_pages_as_they_complete() -> None:
    builder = DirectoryBuilder()
    handed: list[tuple[str, bytes]] = []
    entries = sorted(listing(2000), key=lambda e: e.name)
    for i, entry in enumerate(entries):
        handed += builder.add(entry)
        if i == 1500:
            assert len(handed) >= 8  # most pages are out long before the end
    rest = builder.finish()
    assert rest.key == build_directory(entries).key
    assert dict(handed + rest.nodes) == stored(build_directory(entries))


def test_the_builder_refuses_entries_out_of_order() -> None:
    builder = DirectoryBuilder()
    builder.add(file_entry("b"))
    with pytest.raises(ValueError, match="does not sort after"):
        builder.add(file_entry("a"))


def test_build_directory_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError):
        build_directory([file_entry("a"), file_entry("a", "other")])


# --- rebuilding ------------------------------------------------------------------------

_POOL = [f"n{i}" for i in range(4000)]
changes_lists = st.dictionaries(
    st.sampled_from([*_POOL, "n34x", "zz", "a"]),
    st.one_of(st.none(), st.sampled_from(["", "v2"])),
    min_size=1,
    max_size=6,
)


def _changes(raw: dict[str, str | None]) -> dict[str, TreeEntry | None]:
    return {name: None if v is None else file_entry(name, v, 2) for name, v in raw.items()}


@settings(deadline=None)
@given(st.integers(FANOUT - 10, 2500), changes_lists)
def test_a_rebuild_equals_a_build_of_the_changed_listing(
    count: int, raw: dict[str, str | None]
) -> None:
    entries = listing(count)
    built = build_directory(entries)
    changes = _changes(raw)
    expected = build_directory(apply_changes(entries, changes))
    nodes = stored(built)
    if shape_of(nodes, built.key) is None:
        return  # not paged: rebuilt from its one node, as `build_directory`
    result, _ = rebuild(nodes, built.key, changes)
    assert result.key == expected.key
    assert result.top == expected.top
    # every node it calls new really is new, and with those the directory is complete
    assert not set(dict(result.nodes)) & set(nodes)
    whole = nodes | dict(result.nodes)
    assert leaf_pages(whole, result.key) == leaf_pages(stored(expected), expected.key)


_BIG = build_directory(listing(3000))


@settings(deadline=None)
@given(st.sampled_from(_POOL[:3000]), st.sampled_from(["insert", "delete", "edit"]))
def test_one_change_rewrites_one_page_two_when_a_cut_moves(name: str, kind: str) -> None:
    built = _BIG
    nodes = stored(built)
    changed = name + "x" if kind == "insert" else name
    pages = leaf_pages(nodes, built.key)
    at = max(i for i, p in enumerate(pages) if i == 0 or p[0].name <= changed)
    full = any(len(p) == MAX_PAGE for p in pages[at : at + 2])  # a forced cut may move
    change = {changed: None if kind == "delete" else file_entry(changed, "new", 2)}
    result, read = rebuild(nodes, built.key, change)
    rewritten = len(result.nodes) - 1  # besides the top
    moves_a_cut = kind != "edit" and (is_cut(changed) or full)
    assert rewritten <= 2 if moves_a_cut else rewritten == 1
    if kind != "delete":  # a delete may read on until FANOUT entries are known to remain
        assert len(read) <= 2


def test_a_delete_of_a_cut_name_joins_two_pages_into_one() -> None:
    entries = listing(3000)
    built = build_directory(entries)
    nodes = stored(built)
    cut_name = next(p[-1].name for p in leaf_pages(nodes, built.key)[:-1] if is_cut(p[-1].name))
    result, read = rebuild(nodes, built.key, {cut_name: None})
    assert len(result.nodes) == 2  # one joined page, the top
    assert len(read) >= 2  # both pages (and maybe more, to know it keeps FANOUT entries)


def test_forced_cuts_move_only_through_a_run_of_full_pages() -> None:
    # 300 names without a cut: pages of 128, 128, 44, then ordinary ones
    same = uncut(300)
    entries = same + listing(600, "z")
    built = build_directory(entries)
    nodes = stored(built)
    result, _ = rebuild(nodes, built.key, {"same00000a": file_entry("same00000a")})
    rewritten = len(result.nodes) - 1
    assert rewritten == 3  # the two full pages shift by one, and the page after them
    expected = build_directory([*entries, file_entry("same00000a")])
    assert result.key == expected.key


def test_a_paged_directory_shrinking_to_fanout_becomes_one_node_again() -> None:
    entries = listing(FANOUT + 44)
    built = build_directory(entries)
    changes: dict[str, TreeEntry | None] = {e.name: None for e in entries[:44]}
    result, _ = rebuild(stored(built), built.key, changes)
    node = decode(dict(result.nodes), result.key)
    assert node.entries is not None and len(node.entries) == FANOUT
    emptied, _ = rebuild(stored(built), built.key, {e.name: None for e in entries})
    assert emptied.top == b'{"format":2,"entries":[]}'


def test_an_edit_in_a_directory_with_index_pages_rewrites_one_node_per_level() -> None:
    entries = [
        TreeEntry(name=f"e{i}", type="symlink", target="t", mode=0, version={"p": 1})
        for i in range(40_000)
    ]
    built = build_directory(entries)
    nodes = stored(built)
    shape = shape_of(nodes, built.key)
    assert shape is not None and len(shape.levels) == 2  # index pages under a top
    for name in ("e20000", "e123", "e39999"):
        edit = TreeEntry(name=name, type="symlink", target="new", mode=0, version={"p": 2})
        result, read = rebuild(nodes, built.key, {name: edit})
        assert len(read) == 1
        assert len(result.nodes) == 3  # leaf page, index page, top
        assert result.key == build_directory(apply_changes(entries, {name: edit})).key


# --- an independent writer -------------------------------------------------------------


def _reference_directory(entries: list[dict[str, object]], nodes: dict[str, bytes]) -> str:
    """SPEC 1.1's paging written plainly with the standard library's json module (as
    docs/FORMAT.md shows it), to check dropbeard's writer against."""

    def put(node: dict[str, object]) -> str:
        data = json.dumps(node, ensure_ascii=False, separators=(",", ":")).encode()
        nodes[hashlib.sha256(data).hexdigest()] = data
        return hashlib.sha256(data).hexdigest()

    def cut_plainly(items: list[dict[str, object]], field: str) -> list[list[dict[str, object]]]:
        groups: list[list[dict[str, object]]] = [[]]
        for item in items:
            groups[-1].append(item)
            word = int.from_bytes(hashlib.sha256(str(item[field]).encode()).digest()[:2], "big")
            if word < 2048 or len(groups[-1]) == 128:
                groups.append([])
        return [g for g in groups if g]

    entries = sorted(entries, key=lambda e: str(e["name"]).encode())
    if len(entries) <= 128:
        return put({"format": 2, "entries": entries})
    level = [
        {"first": p[0]["name"], "tree": put({"format": 2, "entries": p})}
        for p in cut_plainly(entries, "name")
    ]
    while len(level) > 128:
        level = [
            {"first": g[0]["first"], "tree": put({"format": 2, "pages": g})}
            for g in cut_plainly(level, "first")
        ]
    return put({"format": 2, "pages": level})


def _plain(entry: TreeEntry) -> dict[str, object]:
    fields = json.loads(msgspec.json.encode(entry))  # the same fields, in SPEC's order
    fields["version"] = dict(sorted(fields["version"].items()))
    return dict(fields)


@pytest.mark.parametrize("count", [0, 5, 128, 129, 3000, 40_000])
def test_an_independent_writer_makes_the_same_nodes(count: int) -> None:
    entries = [
        TreeEntry(
            name=f"n{i}\u00e9" if i % 7 else f"n{i}",
            type="symlink",
            target=f"t\n{i}\x01",
            mode=0o777,
            version={"pc": i + 1, "laptop": 2},
        )
        for i in range(count)
    ]
    reference: dict[str, bytes] = {}
    key = _reference_directory([_plain(e) for e in entries], reference)
    built = build_directory(entries)
    assert built.key == key
    assert stored(built) == reference
