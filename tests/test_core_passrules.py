"""The pure decisions of one pass around reconcile (SPEC 4, 6), case by case, without a
disk, a bucket or an event loop.

This device is `laptop`; the others are `desktop` and `server`. A file's sha256 is the
hash of its content string, so the tables read as "a holds v2"."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from msgspec.structs import replace

from dropbeard.core.chunking import Chunk, MiB
from dropbeard.core.heads import seen_marks
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.model import Delete, Entry
from dropbeard.core.passrules import (
    RACY_WINDOW_NS,
    PlanInputs,
    StatRow,
    base_status,
    blobs_in_bucket,
    blobs_to_upload,
    held_listing,
    leftovers,
    listing_unchanged,
    local_entries,
    needs_publish,
    newly_ignored,
    problems_after,
    racy_after_ns,
    remote_entries,
    settled_devices,
    stat_rows,
    under_any,
    unknown_paths,
    without_ignored,
)
from dropbeard.core.plan import Base, ConflictInfo, Plan, Remote
from dropbeard.core.problems import Problem, device_problem
from dropbeard.core.safety import guard_deletes

NOW = datetime(2026, 5, 22, 18, 5, tzinfo=UTC)
NOW_NS = 1_779_473_100_000_000_000  # NOW as nanoseconds since the epoch
OLD_NS = NOW_NS - 3_600_000_000_000  # an hour before the pass


def sha(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


def F(path: str, data: str, v: dict[str, int] | None = None) -> Entry:
    return Entry(
        path=path, type="file", mode=0o644, version=v or {}, size=len(data), sha256=sha(data)
    )


def D(path: str, v: dict[str, int] | None = None) -> Entry:
    return Entry(path=path, type="dir", mode=0o755, version=v or {})


def gone(path: str, v: dict[str, int]) -> Delete:
    return Delete(path=path, type="file", version=v)


def problem(path: str) -> Problem:
    return Problem(path=path, kind="permission", message=f"{path}: denied")


# The scan's view of a path, as the engine hands it over (structurally a LocalItem).


@dataclass(frozen=True)
class Stat:
    size: int
    mtime_ns: int = OLD_NS
    inode: int = 7
    ctime_ns: int = OLD_NS


@dataclass(frozen=True)
class Item:
    type: str
    mode: int = 0o644
    stat: Stat | None = None
    sha256: str | None = None
    target: str | None = None
    chunks: tuple[Chunk, ...] | None = None


def scanned_file(data: str, **stamps: int) -> Item:
    return Item("file", stat=Stat(len(data), **stamps), sha256=sha(data))


LARGE = Item(
    "file",
    stat=Stat(20 * MiB),
    sha256=sha("large"),
    chunks=(Chunk(sha("one"), 12 * MiB), Chunk(sha("two"), 8 * MiB)),
)

# -- local_entries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(
            Item("file", 0o600, Stat(5, mtime_ns=42), sha("hello")),
            Entry(
                path="p",
                type="file",
                mode=0o600,
                version={},
                size=5,
                mtime_ns=42,
                sha256=sha("hello"),
            ),
            id="file_keeps_size_mtime_and_hash",
        ),
        pytest.param(
            LARGE,
            Entry(
                path="p",
                type="file",
                mode=0o644,
                version={},
                size=20 * MiB,
                mtime_ns=OLD_NS,
                sha256=sha("large"),
                chunks=list(LARGE.chunks or ()),
            ),
            id="large_file_keeps_its_chunks",
        ),
        pytest.param(
            Item("symlink", 0o777, target="../elsewhere"),
            Entry(path="p", type="symlink", mode=0o777, version={}, target="../elsewhere"),
            id="symlink_keeps_its_target",
        ),
        pytest.param(
            Item("dir", 0o750),
            Entry(path="p", type="dir", mode=0o750, version={}),
            id="directory_is_just_a_mode",
        ),
    ],
)
def test_local_entries(item: Item, expected: Entry) -> None:
    assert local_entries({"p": item}) == {"p": expected}


def test_local_entries_leave_versions_to_reconcile() -> None:
    local = local_entries({"a": scanned_file("x"), "b": Item("dir")})
    assert list(local) == ["a", "b"]
    assert all(e.version == {} for e in local.values())


# -- under_any and unknown_paths ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "roots", "expected"),
    [
        pytest.param("a/b", {"a/b"}, True, id="the_root_itself"),
        pytest.param("a/b/c/d", {"a/b"}, True, id="deep_below"),
        pytest.param("a/bc", {"a/b"}, False, id="a_sibling_sharing_a_prefix"),
        pytest.param("a", {"a/b"}, False, id="an_ancestor_is_not_under"),
        pytest.param("x/y", {"a", "x"}, True, id="any_of_several"),
        pytest.param("a", set(), False, id="no_roots"),
    ],
)
def test_under_any(path: str, roots: set[str], expected: bool) -> None:
    assert under_any(path, roots) is expected


@pytest.mark.parametrize(
    ("unreadable", "only", "path", "unknown"),
    [
        pytest.param(set(), None, "docs/a", False, id="whole_root_read"),
        pytest.param({"docs"}, None, "docs/a", True, id="under_an_unreadable_folder"),
        pytest.param({"docs"}, None, "doc", False, id="beside_an_unreadable_folder"),
        pytest.param(set(), frozenset({"docs"}), "music/a", True, id="outside_the_paths_scanned"),
        pytest.param(set(), frozenset({"docs"}), "docs/a", False, id="inside_the_paths_scanned"),
        pytest.param(set(), frozenset({"docs/a"}), "docs", True, id="parent_of_a_path_scanned"),
        pytest.param({"docs/a"}, frozenset({"docs"}), "docs/a", True, id="scanned_but_unreadable"),
    ],
)
def test_unknown_paths(
    unreadable: set[str], only: frozenset[str] | None, path: str, unknown: bool
) -> None:
    assert unknown_paths(unreadable, only)(path) is unknown


# -- newly_ignored ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "base", "on_disk", "untracked"),
    [
        pytest.param("x\n", Base(entry=F("x", "1")), False, True, id="ignored_so_not_scanned"),
        pytest.param("x\n", Base(entry=F("x", "1")), True, False, id="ignored_yet_scanned"),
        pytest.param("", Base(entry=F("x", "1")), False, False, id="missing_unignored_is_a_delete"),
        pytest.param("x/\n", Base(entry=F("x", "1")), False, False, id="folder_rule_on_a_file"),
        pytest.param("x/\n", Base(entry=D("x")), False, True, id="folder_rule_on_a_folder"),
        pytest.param("x\n", Base(deleted=gone("x", {"laptop": 1})), False, True, id="deleted"),
    ],
)
def test_newly_ignored(rules: str, base: Base, on_disk: bool, untracked: bool) -> None:
    local = {"x"} if on_disk else set()
    assert newly_ignored({"x": base}, local, IgnoreRules.parse(rules)) == (
        ["x"] if untracked else []
    )


# -- without_ignored ----------------------------------------------------------------------


def test_without_ignored_drops_the_other_devices_ignored_paths() -> None:
    entries = [F("x.log", "1"), D("build"), F("build/out.o", "2"), F("logs", "3"), F("a", "4")]
    remote = Remote("desktop", "20260522T180000Z", {e.path: e for e in entries})
    tombstones = [("desktop", gone("y.log", {"desktop": 2})), ("server", gone("b", {"server": 1}))]
    rules = IgnoreRules.parse("*.log\nbuild/\nlogs/\n")

    (kept,), deletes = without_ignored([remote], tombstones, rules)

    assert (kept.device_id, kept.snapshot) == ("desktop", "20260522T180000Z")
    assert sorted(kept.entries) == ["a", "logs"]  # `logs/` is a folder rule; this is a file
    assert deletes == [("server", gone("b", {"server": 1}))]
    assert without_ignored([remote], tombstones, IgnoreRules.empty()) == ([remote], tombstones)


# -- PlanInputs ---------------------------------------------------------------------------


def inputs(only: frozenset[str] | None = None) -> PlanInputs:
    """laptop tracked a.txt and docs/b.txt; both are gone from the folder."""
    base = {
        "a.txt": Base(entry=F("a.txt", "a", {"laptop": 1})),
        "docs": Base(entry=D("docs", {"laptop": 2})),
        "docs/b.txt": Base(entry=F("docs/b.txt", "b", {"laptop": 3})),
    }
    return PlanInputs(
        device_id="laptop",
        mode="bidirectional",
        base=base,
        local={"docs": D("docs")},
        remotes=[],
        tombstones=[],
        counter=10,
        now=NOW,
        only=only,
    )


@pytest.mark.parametrize(
    ("only", "unreadable", "deleted"),
    [
        pytest.param(None, set(), {"a.txt", "docs/b.txt"}, id="whole_root_both_deleted"),
        pytest.param(None, {"docs"}, {"a.txt"}, id="unreadable_folder_keeps_its_files"),
        pytest.param(None, {"a.txt"}, {"docs/b.txt"}, id="a_file_changed_while_uploaded"),
        pytest.param(frozenset({"docs"}), set(), {"docs/b.txt"}, id="only_the_paths_scanned"),
    ],
)
def test_plan_inputs_plan_leaves_unknown_paths_alone(
    only: frozenset[str] | None, unreadable: set[str], deleted: set[str]
) -> None:
    plan = inputs(only).plan(unreadable)
    assert {r.path for r in plan.removals} == deleted
    assert {t.path for t in plan.tombstones} == deleted


def test_with_unreadable_ignore_rules_only_tracked_paths_sync() -> None:
    """SPEC 2: the pass publishes no new path, and takes none: it may be one the person
    ignores. Tracked paths sync as usual, both ways."""
    base = {
        "edited.txt": Base(entry=F("edited.txt", "v1", {"laptop": 1})),
        "theirs.txt": Base(entry=F("theirs.txt", "v1", {"laptop": 2})),
    }
    local = {
        "edited.txt": F("edited.txt", "v2"),
        "theirs.txt": F("theirs.txt", "v1"),
        "new.txt": F("new.txt", "new"),
    }
    remote = Remote(
        "desktop",
        "20260522T180000Z",
        {
            "theirs.txt": F("theirs.txt", "v2", {"laptop": 2, "desktop": 1}),
            "remote-new.txt": F("remote-new.txt", "rn", {"desktop": 2}),
        },
    )
    tombstones = [("desktop", gone("gone-new.txt", {"desktop": 3}))]

    def plan(tracked_only: bool) -> Plan:
        return PlanInputs(
            device_id="laptop",
            mode="bidirectional",
            base=base,
            local=local,
            remotes=[remote],
            tombstones=tombstones,
            counter=10,
            now=NOW,
            tracked_only=tracked_only,
        ).plan(set())

    broken, fine = plan(True), plan(False)
    assert {e.path for e in broken.listed()} == {"edited.txt", "theirs.txt"}
    assert [e.path for e in broken.uploads] == ["edited.txt"]
    assert [d.path for d in broken.downloads] == ["theirs.txt"]
    assert broken.deferred_tombstones == tombstones  # offered again once the rules read
    assert {e.path for e in fine.listed()} == {
        "edited.txt",
        "theirs.txt",
        "new.txt",
        "remote-new.txt",
    }
    assert sorted(d.path for d in fine.downloads) == ["remote-new.txt", "theirs.txt"]


# -- guard_deletes ------------------------------------------------------------------------


def gone_but(files: int, kept: int) -> tuple[Plan, dict[str, Base]]:
    """The plan of a pass that found all but `kept` of `files` tracked files gone."""
    base = {f"f{i:03}": Base(entry=F(f"f{i:03}", str(i), {"laptop": i + 1})) for i in range(files)}
    local = {p: b.entry for p, b in list(base.items())[:kept] if b.entry is not None}
    plan = PlanInputs(
        device_id="laptop",
        mode="bidirectional",
        base=base,
        local=local,
        remotes=[],
        tombstones=[],
        counter=100,
        now=NOW,
    ).plan(set())
    return plan, base


@pytest.mark.parametrize(
    ("files", "kept", "allow", "halted", "reported", "deletes_kept"),
    [
        pytest.param(100, 0, False, True, True, False, id="emptied_root_holds_deletes"),
        pytest.param(100, 0, True, True, False, True, id="allowed_mass_delete_goes_ahead"),
        pytest.param(100, 99, False, False, False, True, id="one_delete_goes_ahead"),
        pytest.param(0, 0, False, False, False, True, id="nothing_tracked_nothing_to_guard"),
        pytest.param(1, 0, False, True, True, False, id="last_file_gone_from_an_empty_root"),
    ],
)
def test_guard_deletes(
    files: int, kept: int, allow: bool, halted: bool, reported: bool, deletes_kept: bool
) -> None:
    plan, base = gone_but(files, kept)
    guard = guard_deletes(plan, base.values(), root_empty=kept == 0, allow=allow)
    assert (guard.halt is not None) is halted
    assert (guard.reported is not None) is reported
    guarded = guard.applied_to(plan)
    assert (guarded is plan) is deletes_kept
    if not deletes_kept:
        assert guarded.removals == [] and guarded.tombstones == []
        assert {e.path for e in guarded.listed()} == set(base)


# -- blobs --------------------------------------------------------------------------------


def test_blobs_in_bucket_are_those_the_other_devices_list() -> None:
    desktop = Remote("desktop", "20260522T175900Z", {"d": F("d", "desk"), "dir": D("dir")})
    server = Remote("server", "20260522T180000Z", {"s": F("s", "serv")})
    assert blobs_in_bucket([desktop, server]) == {sha("desk"), sha("serv")}


def test_a_file_in_chunks_is_in_the_bucket_as_its_chunks_not_its_sha256() -> None:
    desktop = Remote("desktop", "20260522T175900Z", {"big": BIG})
    assert blobs_in_bucket([desktop]) == {sha("c1"), sha("c2")}


BIG = replace(
    F("big", "big"),
    size=20 * MiB,
    chunks=[Chunk(sha("c1"), 12 * MiB), Chunk(sha("c2"), 8 * MiB)],
)


@pytest.mark.parametrize(
    ("entry", "known", "scanned", "uploaded"),
    [
        pytest.param(F("a", "new"), set(), {"a"}, True, id="new_content_scanned_here"),
        pytest.param(F("a", "old"), {sha("old")}, {"a"}, False, id="already_in_the_bucket"),
        pytest.param(F("a", "new"), set(), set(), False, id="not_on_disk_here"),
        pytest.param(D("a"), set(), {"a"}, False, id="a_folder_has_no_blob"),
        pytest.param(BIG, {sha("c1"), sha("c2")}, {"big"}, False, id="every_chunk_known"),
        pytest.param(BIG, {sha("c1")}, {"big"}, True, id="a_chunk_not_known"),
        pytest.param(BIG, {sha("big")}, {"big"}, True, id="whole_file_blob_is_not_its_chunks"),
    ],
)
def test_blobs_to_upload(entry: Entry, known: set[str], scanned: set[str], uploaded: bool) -> None:
    assert blobs_to_upload([entry], known, scanned) == ([entry] if uploaded else [])


# -- held_listing ---------------------------------------------------------------------------


OLD_A = F("a", "old", {"desktop": 1})
NEW_A = F("a", "new", {"desktop": 2})
B = F("b", "b", {"laptop": 1})


@pytest.mark.parametrize(
    ("base", "failed", "held"),
    [
        pytest.param({"a": Base(entry=OLD_A)}, set(), [NEW_A, B], id="nothing_failed"),
        pytest.param({"a": Base(entry=OLD_A)}, {"a"}, [OLD_A, B], id="failed_download_keeps_old"),
        pytest.param({}, {"a"}, [B], id="failed_new_path_is_left_out"),
        pytest.param(
            {"a": Base(deleted=gone("a", {"laptop": 3}))}, {"a"}, [B], id="failed_over_a_delete"
        ),
        pytest.param(
            {"a": Base(entry=OLD_A, conflict=ConflictInfo(version={"desktop": 1}))},
            {"a"},
            [B],
            id="failed_path_in_conflict_is_left_out",
        ),
        pytest.param({"a": Base(entry=OLD_A)}, {"b"}, [NEW_A], id="failed_path_without_a_base"),
    ],
)
def test_held_listing(base: dict[str, Base], failed: set[str], held: list[Entry]) -> None:
    plan = Plan(publishes=True, listing={"a": NEW_A, "b": B})
    assert held_listing(plan, failed, base).listed() == held


def test_held_listing_keeps_a_path_whose_delete_failed() -> None:
    """The local delete of `a` failed: `a` keeps its base, so it stays listed (the plan
    would have left it out), and the next pass sees it as it was."""
    plan = Plan(publishes=True, listing={"a": None, "b": B})
    assert held_listing(plan, {"a"}, {"a": Base(entry=OLD_A)}).listed() == [OLD_A, B]
    assert plan.listed() == [B]


# -- listing_unchanged ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listing", "unchanged"),
    [
        pytest.param({}, True, id="nothing_listed"),
        pytest.param({"a": OLD_A}, True, id="listed_as_agreed"),
        pytest.param({"a": NEW_A}, False, id="a_new_version"),
        pytest.param({"a": None}, False, id="left_out"),
        pytest.param({"b": B}, False, id="a_new_path"),
        pytest.param({"b": None}, True, id="an_unknown_path_left_out"),
        pytest.param({"c": None}, True, id="a_path_in_conflict_left_out"),
    ],
)
def test_listing_unchanged(listing: dict[str, Entry | None], unchanged: bool) -> None:
    """Whether the plan's listing changes what the agreed bases publish: if not, an idle
    pass does not even read the last published listing."""
    conflicted = Base(entry=B, conflict=ConflictInfo(version={"laptop": 1}))
    base = {"a": Base(entry=OLD_A), "c": conflicted}
    plan = Plan(publishes=True, listing=listing)
    assert listing_unchanged(plan, base) is unchanged


# -- needs_publish ------------------------------------------------------------------------


TREE_A, TREE_B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("tree", "tombstones", "last_tree", "publishes"),
    [
        pytest.param(TREE_A, [], TREE_A, False, id="idle_pass_writes_nothing"),
        pytest.param(TREE_B, [], TREE_A, True, id="entries_changed"),
        pytest.param(TREE_A, [gone("x", {"laptop": 4})], TREE_A, True, id="a_delete"),
        pytest.param(TREE_A, [], None, True, id="never_published"),
    ],
)
def test_needs_publish(
    tree: str, tombstones: list[Delete], last_tree: str | None, publishes: bool
) -> None:
    plan = Plan(publishes=True, tombstones=tombstones)
    assert needs_publish(plan, tree, last_tree) is publishes


# -- settled_devices and seen_marks --------------------------------------------------------


DEVICES = {"desktop": "desktop-view", "server": "server-view"}
DESKTOP_DELETE = ("desktop", gone("docs/x", {"desktop": 5}))


@pytest.mark.parametrize(
    ("deferred", "failed", "settled"),
    [
        pytest.param([], set(), {"desktop", "server"}, id="everything_processed"),
        pytest.param([DESKTOP_DELETE], set(), {"server"}, id="deferred_tombstone_is_re_read"),
        pytest.param([], {"docs/x"}, {"server"}, id="failed_local_delete_is_re_read"),
        pytest.param([], {"docs/y"}, {"desktop", "server"}, id="failure_of_an_unrelated_path"),
    ],
)
def test_settled_devices(
    deferred: list[tuple[str, Delete]], failed: set[str], settled: set[str]
) -> None:
    plan = Plan(publishes=True, deferred_tombstones=deferred)
    got = settled_devices(DEVICES, plan, failed, [DESKTOP_DELETE])
    assert got == {d: v for d, v in DEVICES.items() if d in settled}


@dataclass(frozen=True)
class Peer:
    snapshot: str | None
    tombstone_seq: int = 0


def head(device: str, snapshot: str, seq: int) -> Peer:
    """A head of `device` processed this pass, as the pass holds it."""
    return Peer(snapshot, seq)


@pytest.mark.parametrize(
    ("peers", "heads", "expected"),
    [
        pytest.param({"desktop": Peer("M1", 2)}, {}, {"desktop": ("M1", 2)}, id="as_recorded"),
        pytest.param({"desktop": Peer(None)}, {}, {}, id="never_processed_is_not_seen"),
        pytest.param({"desktop": Peer("")}, {}, {}, id="empty_snapshot_is_not_seen"),
        pytest.param(
            {"desktop": Peer(None, 4)}, {}, {"desktop": (None, 4)}, id="deletes_processed"
        ),
        pytest.param(
            {"desktop": Peer("M1", 2)},
            {"desktop": head("desktop", "M2", 3)},
            {"desktop": ("M2", 3)},
            id="processed_this_pass_wins",
        ),
        pytest.param(
            {"desktop": Peer("M1", 2)},
            {"server": head("server", "S1", 0)},
            {"desktop": ("M1", 2), "server": ("S1", 0)},
            id="first_read_of_a_device",
        ),
    ],
)
def test_seen_marks(
    peers: dict[str, Peer], heads: dict[str, Peer], expected: dict[str, tuple[str, int]]
) -> None:
    marks = seen_marks(peers, heads)
    assert {d: (m.snapshot, m.tombstone_seq) for d, m in marks.items()} == expected


# -- stat_rows ----------------------------------------------------------------------------


def test_racy_window_ends_before_the_pass_began() -> None:
    assert racy_after_ns(NOW) == NOW_NS - RACY_WINDOW_NS


RACY = NOW_NS - RACY_WINDOW_NS  # racy_after_ns(NOW)


def row(item: Item) -> StatRow:
    assert item.stat is not None and item.sha256 is not None
    s = item.stat
    return (s.size, s.mtime_ns, s.inode, s.ctime_ns, item.sha256, item.chunks)


@dataclass
class StatCase:
    item: Item
    cached: bool = False
    written: StatRow | None = None
    recorded: list[StatRow] = field(default_factory=list)


WRITTEN: StatRow = (3, OLD_NS, 9, OLD_NS, sha("new"), None)
PLAIN = scanned_file("abc")
JUST_OLD = scanned_file("abc", mtime_ns=RACY - 1, ctime_ns=RACY - 1)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(StatCase(PLAIN, recorded=[row(PLAIN)]), id="newly_hashed_file"),
        pytest.param(StatCase(PLAIN, cached=True), id="unchanged_cache_hit"),
        pytest.param(StatCase(LARGE, recorded=[row(LARGE)]), id="large_file_keeps_its_chunks"),
        pytest.param(StatCase(scanned_file("abc", mtime_ns=RACY)), id="racy_mtime_is_rehashed"),
        pytest.param(StatCase(scanned_file("abc", ctime_ns=RACY + 1)), id="racy_ctime_is_rehashed"),
        pytest.param(
            StatCase(JUST_OLD, recorded=[row(JUST_OLD)]),
            id="just_outside_the_window",
        ),
        pytest.param(StatCase(PLAIN, written=WRITTEN, recorded=[WRITTEN]), id="written_this_pass"),
        pytest.param(StatCase(Item("file", stat=Stat(3))), id="unhashed_file"),
        pytest.param(StatCase(Item("symlink", target="x")), id="symlink_has_no_row"),
    ],
)
def test_stat_rows(case: StatCase) -> None:
    cache = {"p": row(case.item)} if case.cached else {}
    written = {"p": case.written} if case.written is not None else {}
    rows = stat_rows({"p": case.item}, cache, written, racy_after_ns(NOW))
    assert rows == [("p", r) for r in case.recorded]


# -- base_status and problems_after -------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "status"),
    [
        pytest.param(Base(entry=B), "clean", id="held"),
        pytest.param(Base(deleted=gone("b", {"laptop": 2})), "deleted", id="deleted"),
        pytest.param(
            Base(entry=B, conflict=ConflictInfo(version={"laptop": 1, "desktop": 1})),
            "conflict",
            id="conflict_even_with_an_entry",
        ),
    ],
)
def test_base_status(base: Base, status: str) -> None:
    assert base_status(base) == status


@pytest.mark.parametrize(
    ("only", "kept"),
    [
        pytest.param(None, [], id="whole_root_replaces_every_problem"),
        pytest.param(frozenset({"docs"}), ["music/b"], id="only_settles_the_paths_it_saw"),
        pytest.param(frozenset({"other"}), ["docs/a", "music/b"], id="unrelated_paths_keep_all"),
    ],
)
def test_problems_after(only: frozenset[str] | None, kept: list[str]) -> None:
    earlier = [problem("docs/a"), problem("music/b")]
    found = [problem("docs/c")]
    after = problems_after(earlier, found, only)
    assert [p.path for p in after] == [*kept, "docs/c"]


def test_a_problem_found_again_by_a_pass_over_other_paths_is_recorded_once() -> None:
    """Every pass reads the ignore file, whatever paths it scans."""
    earlier = [problem(".dropbearignore"), problem("music/b")]
    after = problems_after(earlier, [problem(".dropbearignore")], frozenset({"docs"}))
    assert [p.path for p in after] == ["music/b", ".dropbearignore"]


def test_a_pass_over_some_paths_settles_the_device_problems_too() -> None:
    """It read every other device, so what it found about them replaces what was known."""
    earlier = [device_problem("b", "b was unreadable"), problem("music/b")]
    found = [device_problem("c", "c is unreadable now")]
    after = problems_after(earlier, found, frozenset({"docs"}))
    assert [p.path for p in after] == ["music/b", "devices/c/"]


def test_remote_entries_keep_only_permission_bits() -> None:
    tool = replace(F("tool", "x", {"desktop": 1}), mode=0o6755)
    shared = Entry(path="shared", type="dir", mode=0o1777, version={"desktop": 2})
    plain = F("plain", "y", {"desktop": 3})
    got = remote_entries([tool, shared, plain])
    assert {p: e.mode for p, e in got.items()} == {"tool": 0o755, "shared": 0o777, "plain": 0o644}
    assert got["plain"] is plain


def test_leftovers_are_deleted_folders_holding_only_what_is_not_synced() -> None:
    def folder(p: str) -> Entry:
        return Entry(path=p, type="dir", mode=0o755, version={})

    gone = Base(deleted=Delete(path="x", type="dir", version={"a": 2}))
    local = {p: folder(p) for p in ("build", "build/obj", "made-again", "grown", "kept")}
    local["grown/new.txt"] = Entry(
        path="grown/new.txt",
        type="file",
        mode=0o644,
        version={},
        size=1,
        mtime_ns=1,
        sha256="0" * 64,
    )
    base = {p: gone for p in ("build", "build/obj", "made-again", "grown")}
    base["kept"] = Base(entry=folder("kept"))
    nonempty = {"build", "build/obj", "grown", "kept"}
    # made-again is empty (made again by hand); grown holds a synced file; kept is agreed
    assert leftovers(local, base, nonempty.__contains__) == {"build", "build/obj"}
    # an empty build/obj is content (made again), so build above it is too
    assert leftovers(local, base, lambda p: p == "build") == set()
