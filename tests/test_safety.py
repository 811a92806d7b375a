"""The mass-delete guard (SPEC 6) on real plans from reconcile."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from dropbeard.core.model import Delete, Entry
from dropbeard.core.reconcile import Base, Mode, Plan, Remote, reconcile
from dropbeard.core.safety import (
    Halt,
    check_mass_delete,
    counts_tracked,
    tracked_files,
    without_local_deletes,
)

NOW = datetime(2026, 5, 22, 18, 5, tzinfo=UTC)


def file(path: str, data: str = "x", v: dict[str, int] | None = None) -> Entry:
    sha = hashlib.sha256(data.encode()).hexdigest()
    return Entry(path=path, type="file", mode=0o644, version=v or {}, size=len(data), sha256=sha)


def tracked(n: int, folder: str = "docs") -> dict[str, Base]:
    """A base tracking `folder/` and n files in it."""
    base = {folder: Base(entry=Entry(path=folder, type="dir", mode=0o755, version={"laptop": 1}))}
    for i in range(n):
        path = f"{folder}/f{i:03}"
        base[path] = Base(entry=file(path, path, {"laptop": i + 2}))
    return base


def local_of(base: dict[str, Base], keep: int | None = None) -> dict[str, Entry]:
    """The local folder holding the base's content, minus all files after the first `keep`."""
    local: dict[str, Entry] = {}
    files = 0
    for path, b in sorted(base.items()):
        assert b.entry is not None
        if b.entry.type == "file":
            files += 1
            if keep is not None and files > keep:
                continue
        local[path] = b.entry
    return local


def plan_for(
    base: dict[str, Base],
    local: dict[str, Entry],
    mode: Mode = "bidirectional",
    remotes: list[Remote] | None = None,
    tombstones: list[tuple[str, Delete]] | None = None,
) -> Plan:
    return reconcile(
        device_id="laptop",
        mode=mode,
        base=base,
        local=local,
        unknown=lambda _: False,
        remotes=remotes or [],
        tombstones=tombstones or [],
        counter=1000,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("files", "kept", "empty", "halts"),
    [
        pytest.param(100, 50, False, False, id="50_of_100_is_not_more_than_50"),
        pytest.param(100, 49, False, True, id="51_of_100_halts"),
        pytest.param(200, 140, False, False, id="60_of_200_is_under_half"),
        pytest.param(80, 10, False, True, id="70_of_80_halts"),
        pytest.param(40, 5, False, False, id="35_of_40_is_under_50_files"),
        pytest.param(3, 0, True, True, id="emptied_root_halts"),
        pytest.param(1, 0, True, True, id="the_last_tracked_file_gone_from_an_empty_root_halts"),
        pytest.param(3, 0, False, False, id="every_file_gone_but_the_root_holds_something"),
        pytest.param(1, 0, False, False, id="the_only_file_renamed_is_an_ordinary_change"),
        pytest.param(3, 3, True, False, id="nothing_deleted"),
    ],
)
def test_mass_delete_thresholds(files: int, kept: int, empty: bool, halts: bool) -> None:
    base = tracked(files)
    plan = plan_for(base, local_of(base, keep=kept))
    assert len(plan.tombstones) == files - kept
    halt = check_mass_delete(plan, tracked_files(base.values()), root_empty=empty)
    assert (halt is not None) == halts
    if halt is not None:
        assert halt.deletes == files - kept and halt.tracked == files
        assert "--allow-mass-delete" in halt.reason and "\n" not in halt.reason


@pytest.mark.parametrize(
    ("files", "kept", "empty"),
    [
        pytest.param(100, 50, False, id="50_of_100"),
        pytest.param(100, 49, False, id="51_of_100"),
        pytest.param(80, 10, False, id="70_of_80"),
        pytest.param(40, 5, False, id="35_of_40"),
        pytest.param(3, 0, True, id="emptied_root"),
        pytest.param(3, 0, False, id="every_file_gone_from_a_root_holding_something"),
        pytest.param(3, 3, True, id="nothing_deleted"),
    ],
)
def test_the_tracked_files_are_counted_only_when_the_verdict_needs_them(
    files: int, kept: int, empty: bool
) -> None:
    """Counting reads every base: a pass does it only for a big delete or an empty root.
    When it does not, any count gives the same verdict as the true one."""
    base = tracked(files)
    plan = plan_for(base, local_of(base, keep=kept))
    needed = counts_tracked(plan, root_empty=empty)
    assert needed == ((files - kept > 50 or empty) and files > kept)
    if not needed:
        verdict = check_mass_delete(plan, tracked_files(base.values()), root_empty=empty)
        for count in (0, 1, 10**6):
            assert check_mass_delete(plan, count, root_empty=empty) == verdict


def test_directories_are_not_counted_as_files() -> None:
    base = tracked(60)
    assert tracked_files(base.values()) == 60
    dirs = {
        f"d{i}": Base(entry=Entry(path=f"d{i}", type="dir", mode=0o755, version={"x": i + 1}))
        for i in range(100)
    }
    plan = plan_for({**base, **dirs}, local_of(base))  # every directory vanished, no file
    assert len(plan.tombstones) == 100
    assert (
        check_mass_delete(plan, tracked_files([*base.values(), *dirs.values()]), root_empty=False)
        is None
    )


def test_remote_deletes_applied_here_do_not_count() -> None:
    base = tracked(100)
    tombstones = [
        (
            "desktop",
            Delete(
                path=p,
                type="file",
                version={**b.entry.version, "desktop": 1},
                sha256=b.entry.sha256,
            ),
        )
        for p, b in base.items()
        if b.entry is not None and b.entry.type == "file"
    ]
    plan = plan_for(base, local_of(base), tombstones=tombstones)
    assert len(plan.local_deletes) == 100
    assert check_mass_delete(plan, 100, root_empty=False) is None


def test_halted_plan_still_syncs_additions_and_edits() -> None:
    base = tracked(100)
    local = local_of(base, keep=10)
    local["docs/f000"] = file("docs/f000", "edited")
    local["new.txt"] = file("new.txt", "new")
    remote = Remote(
        "desktop", "20260522T180000Z", {"from-desktop": file("from-desktop", "d", {"desktop": 1})}
    )
    plan = plan_for(base, local, remotes=[remote])
    assert isinstance(check_mass_delete(plan, tracked_files(base.values()), root_empty=False), Halt)

    safe = without_local_deletes(plan)
    assert safe.tombstones == []
    assert check_mass_delete(safe, tracked_files(base.values()), root_empty=False) is None
    published = {e.path for e in safe.listed()}
    assert {p for p in base} <= published  # the vanished files stay published
    assert {"new.txt", "from-desktop"} <= published
    assert [e.path for e in safe.listed()] == sorted(published)
    assert [u.path for u in safe.uploads] == ["docs/f000", "new.txt"]
    assert [d.path for d in safe.downloads] == ["from-desktop"]
    assert set(safe.base) == {"docs/f000", "new.txt", "from-desktop"}  # deletes not agreed

    # Committed as is, the next pass finds the same files missing and halts again.
    after = {**base, **safe.base}
    again = plan_for(after, local, remotes=[remote])
    assert isinstance(
        check_mass_delete(again, tracked_files(after.values()), root_empty=False), Halt
    )


def test_download_only_emptied_root_halts_though_it_publishes_nothing() -> None:
    base = tracked(5)
    plan = plan_for(base, {}, mode="download-only")
    assert plan.tombstones == [] and plan.listed() == []
    assert check_mass_delete(plan, 5, root_empty=True) is not None
    safe = without_local_deletes(plan)
    assert safe.base == {}  # so the files are still tracked (and re-downloadable) next pass


def test_a_small_delete_passes_and_the_helper_never_mutates_the_plan() -> None:
    base = tracked(10)
    plan = plan_for(base, local_of(base, keep=9))
    assert check_mass_delete(plan, 10, root_empty=False) is None
    assert without_local_deletes(plan).tombstones == []
    assert [t.path for t in plan.tombstones] == ["docs/f009"]
    assert "docs/f009" in plan.base
