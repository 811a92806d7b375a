"""Properties of reconcile over arbitrary states (hypothesis): idempotence, independence
from the order of remotes and tombstones, no version lost, local edits never clobbered."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import UTC, datetime

import hypothesis.strategies as st
import msgspec
from hypothesis import given, settings

from dropbeard.core.cases import _decide, _local_candidate, settle
from dropbeard.core.chunking import Chunk
from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.conflicts import same_content
from dropbeard.core.decision import Candidate, PassContext
from dropbeard.core.folders import bases_below_in
from dropbeard.core.fullcheck import plan_differences
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import PUBLISHES
from dropbeard.core.reconcile import Base, Mode, Plan, Remote, reconcile
from dropbeard.core.scope import local_changes, with_folders
from dropbeard.core.version import Order, compare, merge
from tests.test_reconcile_sim import apply_plan, content_of, key_of

ME = "laptop"
OTHERS = ["desktop", "server", "phone-2"]
PATHS = ["a", "b.txt", "d", "d/e.md"]
MODES: list[Mode] = ["bidirectional", "upload-only", "download-only", "archive-only"]
COUNTER = 10  # above every counter of ME in generated vectors
NOW = datetime(2026, 5, 22, 18, 5, tzinfo=UTC)

vectors = st.dictionaries(st.sampled_from([ME, *OTHERS]), st.integers(1, 4), min_size=1)


@dataclass(frozen=True)
class State:
    """Everything reconcile is given (this device is `laptop`)."""

    mode: Mode
    base: dict[str, Base]
    local: dict[str, Entry]
    unknown: frozenset[str]
    remotes: list[Remote]
    tombstones: list[tuple[str, Delete]]
    counter: int = COUNTER

    def plan(self, paths: set[str] | None = None) -> Plan:
        """The full reconcile, or one of `paths` (`base` then holds only theirs and their
        folders', the rest is asked for by folder)."""
        base = self.base
        if paths is not None:
            base = {p: b for p, b in self.base.items() if p in with_folders(paths)}
        return reconcile(
            device_id=ME,
            mode=self.mode,
            base=base,
            local=self.local,
            unknown=lambda p: p in self.unknown,
            remotes=self.remotes,
            tombstones=self.tombstones,
            counter=self.counter,
            now=NOW,
            paths=paths,
            base_below=bases_below_in(self.base),
        )

    def applied(self, plan: Plan) -> State:
        """The state after the engine applied and committed `plan`."""
        local, base = dict(self.local), dict(self.base)
        apply_plan(local, base, plan)
        return dataclasses.replace(self, local=local, base=base, counter=plan.counter)


@st.composite
def contents(draw: st.DrawFn, path: str) -> Entry:
    """A local content (no version) at `path`: a few files, modes, a symlink, a dir."""
    kind = draw(st.sampled_from(["file", "file", "file", "symlink", "dir"]))
    if kind == "dir":
        return Entry(path=path, type="dir", mode=draw(st.sampled_from([0o755, 0o700])), version={})
    if kind == "symlink":
        return Entry(path=path, type="symlink", mode=0o777, version={}, target="x")
    digit = draw(st.sampled_from("123"))
    mode = draw(st.sampled_from([0o644, 0o600]))
    return Entry(path=path, type="file", mode=mode, version={}, size=1, sha256=digit * 64)


@st.composite
def entries(draw: st.DrawFn, path: str) -> Entry:
    return msgspec.structs.replace(draw(contents(path)), version=draw(vectors))


@st.composite
def deletes(draw: st.DrawFn, path: str) -> Delete:
    """A delete naming the bytes of one of `contents`' files, or none (refused over a file)."""
    sha256 = draw(st.sampled_from([None, "1" * 64, "2" * 64, "3" * 64]))
    return Delete(path=path, type="file", version=draw(vectors), sha256=sha256)


@st.composite
def states(draw: st.DrawFn) -> State:
    base: dict[str, Base] = {}
    for path in draw(st.sets(st.sampled_from(PATHS))):
        if draw(st.booleans()):
            base[path] = Base(entry=draw(entries(path)))
        else:
            base[path] = Base(deleted=draw(deletes(path)))
    local: dict[str, Entry] = {}
    for path in draw(st.sets(st.sampled_from(PATHS))):
        held = base.get(path)
        if held and held.entry and draw(st.booleans()):
            local[path] = content_of(held.entry)  # unchanged since the base
        else:
            local[path] = draw(contents(path))
    remotes = [
        Remote(device, "20260522T180000Z", {p: draw(entries(p)) for p in sorted(paths)})
        for device in sorted(draw(st.sets(st.sampled_from(OTHERS))))
        for paths in [draw(st.sets(st.sampled_from(PATHS)))]
    ]
    tombstones = [
        (draw(st.sampled_from(OTHERS)), draw(deletes(p)))
        for p in draw(st.lists(st.sampled_from(PATHS), max_size=3))
    ]
    return State(
        mode=draw(st.sampled_from(MODES)),
        base=base,
        local=local,
        unknown=frozenset(draw(st.sets(st.sampled_from(PATHS), max_size=1))),
        remotes=remotes,
        tombstones=tombstones,
    )


@settings(max_examples=100, deadline=None)
@given(states(), st.booleans())
def test_a_second_pass_is_idle(s: State, reoffer: bool) -> None:
    first = s.plan()
    after = s.applied(first)
    second = dataclasses.replace(after, tombstones=s.tombstones if reoffer else []).plan()
    assert not (second.downloads or second.local_deletes or second.conflict_copies)
    assert not (second.tombstones or second.uploads or second.conflicts or second.base)
    assert second.listed() == first.listed()
    assert second.counter == first.counter


@settings(max_examples=150, deadline=None)
@given(states(), st.sets(st.sampled_from(PATHS)), st.data())
def test_a_pass_over_what_changed_plans_what_a_full_reconcile_plans(
    s: State, edited: set[str], data: st.DataObject
) -> None:
    """After a first pass, people change some paths here, and the tombstones the first
    pass deferred are offered again: reconciling the local changes, those tombstones
    and the paths the first pass left unsettled plans exactly what reconciling every
    path plans (other devices' entries were all processed by the first pass)."""
    first = s.plan()
    after = s.applied(first)
    local = dict(after.local)
    for path in edited:
        if data.draw(st.booleans()):
            local[path] = data.draw(contents(path))
        else:
            local.pop(path, None)
    unknown = frozenset(data.draw(st.sets(st.sampled_from(PATHS), max_size=1)))
    second = dataclasses.replace(
        after, local=local, unknown=unknown, tombstones=first.deferred_tombstones
    )
    changed = set(local_changes(sorted(second.base.items()), local)) | first.unsettled
    changed |= {gone.path for _, gone in second.tombstones}
    full = second.plan()
    previous = {e.path: e for e in first.listed()}
    assert plan_differences(full, second.plan(changed), previous) == []


@settings(max_examples=60, deadline=None)
@given(states(), st.randoms(use_true_random=False))
def test_the_order_of_remotes_and_tombstones_does_not_matter(s: State, rnd: random.Random) -> None:
    remotes, tombstones = list(s.remotes), list(s.tombstones)
    rnd.shuffle(remotes)
    rnd.shuffle(tombstones)
    assert dataclasses.replace(s, remotes=remotes, tombstones=tombstones).plan() == s.plan()


@settings(max_examples=100, deadline=None)
@given(states())
def test_no_remote_version_is_lost(s: State) -> None:
    """Every remote entry ends up at its path, in a conflict copy of it, or causally
    behind what the path held or holds, a delete, or a version that is kept."""
    if s.mode == "upload-only":
        return
    plan = s.plan()
    after = s.applied(plan)
    for remote in s.remotes:
        for path, theirs in remote.entries.items():
            if path in s.unknown:
                continue
            present = [key_of(e) for p, e in after.local.items() if path in (p, _copy_of(p))]
            clash = any(p.path == path and p.kind == "type_clash" for p in plan.problems)
            # below a file or symlink here: not placed, left on the devices holding it
            below_clash = any(
                path.startswith(p.path + "/") and p.kind == "type_clash" for p in plan.problems
            )
            now, before = after.base.get(path, Base()), s.base.get(path, Base())
            behind = [
                held.version
                for held in (now.entry, now.deleted, before.entry, before.deleted)
                if held is not None
            ]
            behind += [d.version for _, d in s.tombstones if d.path == path]
            behind += _fresh_local_version(s, path, plan.counter)
            behind += [
                e.version
                for r in s.remotes
                for p, e in r.entries.items()
                if p == path and (key_of(e) in present or (e.type == "dir" and clash))
            ]
            assert (
                key_of(theirs) in present
                or any(_at_or_after(v, theirs.version) for v in behind)
                or (theirs.type == "dir" and clash)
                or below_clash
            ), (path, theirs)


def _fresh_local_version(s: State, path: str, counter: int) -> list[dict[str, int]]:
    """An upper bound of the fresh version a local change of `path` got this pass (a
    version it dominates is superseded by it), if the path changed here."""
    mine, before = s.local.get(path), s.base.get(path, Base())
    if before.entry is not None:
        changed = mine is None or not same_content(mine, before.entry)
    else:
        changed = mine is not None
    prior = before.entry or before.deleted
    return [merge(prior.version if prior else {}, {ME: counter})] if changed else []


@settings(max_examples=100, deadline=None)
@given(states())
def test_a_local_change_is_never_overwritten_or_deleted(s: State) -> None:
    after = s.applied(s.plan())
    for path, mine in s.local.items():
        held = s.base.get(path)
        changed = held is None or held.entry is None or not same_content(mine, held.entry)
        # (Concurrent permission changes of a directory settle on one device's: documented.)
        if path in s.unknown or (changed and mine.type != "dir"):
            assert path in after.local and same_content(after.local[path], mine), path


def _copy_of(path: str) -> str | None:
    parsed = parse_conflict_name(path)
    return parsed[0] if parsed else None


def _at_or_after(a: dict[str, int], b: dict[str, int]) -> bool:
    return compare(a, b) in (Order.EQUAL, Order.DOMINATES)


@settings(max_examples=200, deadline=None)
@given(
    contents("d/e.md"),
    st.sampled_from(MODES),
    st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, 5))),
)
def test_a_path_new_here_is_decided_as_its_one_candidate_would_be(
    content: Entry, mode: Mode, chunked: tuple[int, int] | None
) -> None:
    """The shortcut for a path new here (`cases.new_here`, most paths of a first sync)
    decides what the full decision over its one candidate decides, with the same fresh
    counter."""
    if chunked is not None and content.type == "file":
        chunks = (Chunk("4" * 64, chunked[0]), Chunk("5" * 64, chunked[1]))
        content = msgspec.structs.replace(content, chunks=chunks)
    quick, full = (
        PassContext(device_id=ME, mode=mode, now=NOW, copies_on_disk={}, counter=COUNTER)
        for _ in range(2)
    )
    shortcut = settle(quick, content.path, Base(), content, [])
    mine = _local_candidate(full, content.path, Base(), content, [])
    assert mine is not None
    decided = _decide(full, content.path, Base(), content, mine, [mine])
    assert shortcut == decided and quick.counter == full.counter == COUNTER + 1
    assert (shortcut.upload is not None) == (mode in PUBLISHES and content.type == "file")


@settings(max_examples=200, deadline=None)
@given(
    contents("d/e.md"),
    vectors,
    st.sampled_from(MODES),
    st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, 5))),
)
def test_a_path_only_one_other_device_holds_is_decided_as_its_one_candidate_would_be(
    content: Entry, version: dict[str, int], mode: Mode, chunked: tuple[int, int] | None
) -> None:
    """The shortcut for a path new here that one other device holds (`cases.arrived`,
    most paths of a new device's first sync) decides what the full decision over that one
    candidate decides, and spends no counter."""
    theirs = msgspec.structs.replace(content, version=version)
    if chunked is not None and theirs.type == "file":
        chunks = (Chunk("4" * 64, chunked[0]), Chunk("5" * 64, chunked[1]))
        theirs = msgspec.structs.replace(theirs, chunks=chunks)
    other = Candidate(version, OTHERS[0], theirs, None, "20261204T000000Z")
    quick, full = (
        PassContext(device_id=ME, mode=mode, now=NOW, copies_on_disk={}, counter=COUNTER)
        for _ in range(2)
    )
    shortcut = settle(quick, theirs.path, Base(), None, [other])
    decided = _decide(full, theirs.path, Base(), None, None, [other])
    assert shortcut == decided and quick.counter == full.counter == COUNTER
    assert shortcut.download is not None and shortcut.download.entry == theirs
