"""Type changes and type clashes (SPEC 4.1, 4.4, 6): a one-sided change of type wins like any
edit; a folder that still holds something surviving is not replaced; what other devices
changed below a file or symlink this device keeps is held, not placed; the plan's listing
is always a valid tree, the mass-delete guard included.

This device is `laptop` (counter 10); helpers as in tests/test_reconcile_cases.py.
"""

from __future__ import annotations

from dropbeard.core.plan import Base, ConflictInfo, Plan
from dropbeard.core.safety import check_mass_delete, tracked_files, without_local_deletes
from dropbeard.core.version import dominates
from tests.test_reconcile_cases import DESKTOP_AT, NOW, D, F, L, gone, held, label, remote, run


def valid(plan: Plan) -> bool:
    """The plan's listing is a tree other devices accept: every path's folders are listed,
    as folders (nothing below a file or symlink, nothing without its folder)."""
    types = {e.path: e.type for e in plan.listed()}
    for path in types:
        folder = path.rpartition("/")[0]
        while folder:
            assert types.get(folder) == "dir", (path, folder, types.get(folder))
            folder = folder.rpartition("/")[0]
    return True


def published(plan: Plan) -> dict[str, str]:
    return {e.path: label(e) for e in plan.listed()}


# --- one-sided type changes win like any edit ----------------------------------------------


def test_one_sided_file_to_folder_is_downloaded() -> None:
    plan = run(
        base=held(F("x", "file", {"desktop": 1})),
        local=[F("x", "file")],
        remotes=[remote("desktop", D("x", {"desktop": 2}), F("x/in.txt", "in", {"desktop": 3}))],
    )
    assert {d.path: label(d.entry) for d in plan.downloads} == {"x": "dir", "x/in.txt": "in"}
    assert not plan.problems and not plan.conflicts
    assert published(plan) == {"x": "dir", "x/in.txt": "in"} and valid(plan)


def test_one_sided_folder_to_file_deletes_its_content_then_downloads() -> None:
    plan = run(
        base=held(D("x", {"desktop": 1}), F("x/a.txt", "a", {"desktop": 2})),
        local=[D("x"), F("x/a.txt", "a")],
        remotes=[remote("desktop", F("x", "now a file", {"desktop": 3}))],
        tombstones=[("desktop", gone("x/a.txt", {"desktop": 4}, of="a"))],
    )
    assert [d.path for d in plan.local_deletes] == ["x/a.txt"]
    assert {d.path: label(d.entry) for d in plan.downloads} == {"x": "now a file"}
    assert not plan.problems and not plan.conflicts
    assert published(plan) == {"x": "now a file"} and valid(plan)


def test_replacing_a_folder_here_tombstones_what_was_below_it() -> None:
    plan = run(
        base=held(D("d", {"desktop": 1}), F("d/f.txt", "f", {"desktop": 2})),
        local=[L("d", "elsewhere")],
        remotes=[remote("desktop", D("d", {"desktop": 1}), F("d/f.txt", "f", {"desktop": 2}))],
    )
    assert [t.path for t in plan.tombstones] == ["d/f.txt"]
    assert published(plan) == {"d": "->elsewhere"} and valid(plan)
    assert {r.path for r in plan.removals} == {"d", "d/f.txt"}  # for the mass-delete guard
    assert not plan.problems


# --- a folder that still holds something stays (SPEC 4.1 type clash) ------------------------


def test_a_folder_holding_a_new_file_stays_and_the_incoming_file_is_a_copy() -> None:
    plan = run(
        base=held(D("x", {"desktop": 1}), F("x/a.txt", "a", {"desktop": 2})),
        local=[D("x"), F("x/a.txt", "a"), F("x/new.txt", "added here")],
        remotes=[remote("desktop", F("x", "now a file", {"desktop": 3}))],
        tombstones=[("desktop", gone("x/a.txt", {"desktop": 4}, of="a"))],
    )
    copy = f"x.conflict-desktop-{DESKTOP_AT}"
    assert [(c.copy_path, label(c.entry)) for c in plan.conflict_copies] == [(copy, "now a file")]
    assert [c.path for c in plan.conflicts] == ["x"]
    assert [d.path for d in plan.downloads] == []  # the folder is not replaced
    assert [d.path for d in plan.local_deletes] == ["x/a.txt"]
    # the folder stays listed as it was (its version is the one the file replaced), so
    # that what it holds is listed under it
    assert published(plan) == {"x": "dir", "x/new.txt": "added here"} and valid(plan)
    assert {e.path: e.version for e in plan.listed()}["x"] == {"desktop": 1}
    conflict = plan.base["x"].conflict
    assert conflict is not None and conflict.copies == [copy]
    assert conflict.version == {"desktop": 3}  # so resolving it dominates the file


def test_a_folder_holding_an_edit_from_a_third_device_stays() -> None:
    plan = run(
        base=held(D("x", {"desktop": 1}), F("x/a.txt", "a", {"desktop": 2})),
        local=[D("x"), F("x/a.txt", "a")],
        remotes=[
            remote("desktop", F("x", "now a file", {"desktop": 3})),
            remote(
                "server",
                D("x", {"desktop": 1}),
                F("x/a.txt", "edited", {"desktop": 2, "server": 1}),
            ),
        ],
        tombstones=[("desktop", gone("x/a.txt", {"desktop": 4}, of="a"))],
    )
    assert [c.path for c in plan.conflicts] == ["x"]
    assert {d.path: label(d.entry) for d in plan.downloads} == {"x/a.txt": "edited"}
    assert published(plan)["x"] == "dir" and valid(plan)


# --- arrivals below a file or symlink this device keeps are held -----------------------------


def test_edits_below_a_folder_replaced_here_are_held_and_reported() -> None:
    folder, f, g = (
        D("d", {"desktop": 1}),
        F("d/f.txt", "f", {"desktop": 2}),
        F("d/g.txt", "g", {"desktop": 3}),
    )
    plan = run(
        base=held(folder, f, g),
        local=[L("d", "elsewhere"), F("other.txt", "unrelated")],
        remotes=[remote("desktop", folder, F("d/f.txt", "edited there", {"desktop": 4}), g)],
    )
    assert published(plan) == {"d": "->elsewhere", "other.txt": "unrelated"} and valid(plan)
    assert [d.path for d in plan.downloads] == []
    assert [t.path for t in plan.tombstones] == ["d/g.txt"]  # untouched there: deleted
    assert "d/f.txt" not in plan.base  # left as it was, to be settled later
    assert [(p.path, p.kind) for p in plan.problems] == [("d", "type_clash")]
    assert "d/f.txt" in plan.problems[0].message
    assert [u.path for u in plan.uploads] == ["other.txt"]  # the rest syncs
    assert plan.counter == 13  # d, d/g.txt and other.txt: none spent on the held path


def test_held_paths_stay_held_and_the_next_pass_is_idle() -> None:
    folder, f = D("d", {"desktop": 1}), F("d/f.txt", "f", {"desktop": 2})
    desktop = remote("desktop", folder, F("d/f.txt", "edited there", {"desktop": 4}))
    first = run(base=held(folder, f), local=[L("d", "elsewhere")], remotes=[desktop])
    after = {**held(folder, f), **first.base}
    second = run(base=after, local=[L("d", "elsewhere")], remotes=[desktop], counter=first.counter)
    assert second.base == {} and second.downloads == [] and second.tombstones == []
    assert second.counter == first.counter
    assert [(p.path, p.kind) for p in second.problems] == [("d", "type_clash")]
    assert second.listed() == first.listed()


def test_a_remote_folder_below_a_local_file_is_held() -> None:
    plan = run(
        base=held(F("x", "mine", {"laptop": 1})),
        local=[F("x", "mine")],
        remotes=[remote("desktop", F("x/y", "theirs", {"desktop": 1}))],  # x in conflict there
    )
    assert published(plan) == {"x": "mine"} and valid(plan)
    assert plan.downloads == []
    assert [(p.path, p.kind) for p in plan.problems] == [("x", "type_clash")]


# --- a deleted file gives way to the folder that grew there --------------------------------


def test_a_file_deleted_here_gives_way_to_a_folder_grown_elsewhere() -> None:
    plan = run(
        base=held(F("x", "mine", {"laptop": 1})),
        local=[],
        remotes=[remote("desktop", F("x/new.txt", "theirs", {"desktop": 1}))],
    )
    assert {d.path: label(d.entry) for d in plan.downloads} == {"x": "dir", "x/new.txt": "theirs"}
    assert plan.tombstones == []
    kept = plan.base["x"].entry
    assert kept is not None and kept.type == "dir" and dominates(kept.version, {"laptop": 11})
    assert published(plan) == {"x": "dir", "x/new.txt": "theirs"} and valid(plan)


def test_a_kept_folder_whose_file_was_deleted_elsewhere_ends_its_conflict() -> None:
    """The folder kept against desktop's file (a conflict here); desktop then deleted its
    file and took this device's folder content: the folder stays, agreed."""
    copy = f"x.conflict-desktop-{DESKTOP_AT}"
    kept_dir = D("x", {"desktop": 1})
    conflict = ConflictInfo(version={"desktop": 3}, copies=[copy], local=kept_dir, since=NOW)
    plan = run(
        base={
            "x": Base(entry=kept_dir, conflict=conflict),
            **held(F("x/new.txt", "n", {"laptop": 1})),
        },
        local=[D("x"), F("x/new.txt", "n"), F(copy, "now a file")],
        remotes=[remote("desktop", F("x/new.txt", "n", {"laptop": 1}))],
        tombstones=[("desktop", gone("x", {"desktop": 5}))],
    )
    assert plan.local_deletes == [] and plan.tombstones == []
    new = plan.base["x"]
    assert new.conflict is None and new.entry is not None and new.entry.type == "dir"
    assert dominates(new.entry.version, {"desktop": 5})
    assert published(plan)["x"] == "dir" and valid(plan)


# --- the mass-delete guard holds a folder's replacement with its deletes (SPEC 6) -----------


def test_a_halted_folder_replacement_keeps_the_published_folder() -> None:
    files = [F(f"d/f{i:02}", f"f{i}", {"desktop": i + 2}) for i in range(60)]
    base = held(D("d", {"desktop": 1}), *files)
    plan = run(base=base, local=[F("d", "a file now"), F("new.txt", "unrelated")])
    halt = check_mass_delete(plan, tracked_files(base.values()), root_empty=False)
    assert halt is not None

    safe = without_local_deletes(plan)
    assert valid(safe)
    kept = published(safe)
    assert kept["d"] == "dir" and kept["new.txt"] == "unrelated"
    assert {f.path for f in files} <= kept.keys()
    assert "d" not in safe.base and [u.path for u in safe.uploads] == ["new.txt"]
    assert safe.tombstones == []


def test_replacing_folders_is_not_counted_as_deleting_files() -> None:
    base = held(*(D(f"d{i}", {"desktop": i + 1}) for i in range(60)))
    plan = run(base=base, local=[F(f"d{i}", "now a file") for i in range(60)])
    assert check_mass_delete(plan, tracked_files(base.values()), root_empty=False) is None
