"""A pass costs what changed (SPEC 4, principle 4): on real roots and a local-directory
remote, a pass after one edit — here or on another device — reads the bases of the paths
involved, not every base; what a pass leaves open (a conflict, a download that failed) is
decided again by the next pass whatever it rescans; a change of the ignore rules brings a
full reconcile; and the full-reconcile check stops a pass that missed a path."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import anyio
import pytest

from dropbeard.cli.main import main
from dropbeard.core.errors import NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Store
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online, root_lock
from dropbeard.sync.state import State
from tests.faults import FaultStore
from tests.treeio import published_listing

KEYS = RootKeys("r1")
FILES = 200


class CountingState(State):
    """A State that counts the base rows a pass reads, and whether it read them all."""

    rows: Counter[str]

    def bases_of(self, paths: Iterable[str]) -> dict[str, bytes]:
        found = super().bases_of(paths)
        self.rows["by path"] += len(found)
        return found

    def bases_below(self, folder: str) -> list[tuple[str, bytes]]:
        found = super().bases_below(folder)
        self.rows["below a folder"] += len(found)
        return found

    def each_base(self) -> Iterator[tuple[str, bytes]]:
        self.rows["every base"] += 1
        yield from super().each_base()


def init(root: Path, remote: Path, device: str) -> Path:
    args = ["init", str(root), "--remote", str(remote), "--root-id", "r1", "--device-id", device]
    assert main([*args, "-q"]) == 0
    return root


def sync(root: Path, *flags: str) -> int:
    return main(["sync", str(root), "-q", *flags])


def one_pass(
    root: Path, remote: Path, only: Iterable[str] | None, store: Store | None = None
) -> Counter[str]:
    """One pass over `only` (None: the whole root), as the daemon runs it; the base rows
    it read."""

    async def go() -> Counter[str]:
        paths = RootPaths(root)
        cfg, plain = open_online(paths)
        plain.close()
        state = CountingState.open(paths.state)
        state.rows = Counter()
        opts = PassOptions(only=None if only is None else frozenset(only))
        try:
            with root_lock(paths):
                await run_pass(paths, cfg, state, store or LocalStore(remote), opts)
        finally:
            state.close()
        return state.rows

    return anyio.run(go)


def published(remote: Path, device: str) -> dict[str, str | None]:
    """The paths `device`'s head lists, with their sha256."""

    async def go() -> dict[str, str | None]:
        listing = await published_listing(LocalStore(remote), KEYS, device)
        return {p: e.sha256 for p, e in listing.items()}

    return anyio.run(go)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bucket_keys(remote: Path) -> list[str]:
    return [str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file()]


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    folder = tmp_path / "remote"
    folder.mkdir()
    return folder


@pytest.fixture
def two(tmp_path: Path, remote: Path) -> tuple[Path, Path]:
    """Devices a and b, both holding the same FILES files in folders of 20."""
    a, b = init(tmp_path / "a", remote, "a"), init(tmp_path / "b", remote, "b")
    for i in range(FILES):
        (a / f"d{i // 20}").mkdir(exist_ok=True)
        (a / f"d{i // 20}" / f"f{i}.txt").write_text(f"file {i}\n")
    for root in (a, b, a):
        assert sync(root) == 0
    return a, b


def test_a_pass_over_one_edit_reads_the_bases_of_that_path_alone(
    two: tuple[Path, Path], remote: Path
) -> None:
    a, _ = two
    (a / "d3" / "f61.txt").write_text("edited\n")

    rows = one_pass(a, remote, ["d3/f61.txt"])

    assert rows["every base"] == 0
    assert rows["by path"] + rows["below a folder"] <= 3  # the file, its folder
    assert published(remote, "a")["d3/f61.txt"] == sha(b"edited\n")


def test_a_pass_after_another_device_moved_reads_only_what_it_changed(
    two: tuple[Path, Path], remote: Path
) -> None:
    a, b = two
    (a / "d3" / "f61.txt").write_text("edited\n")
    (a / "d4" / "f80.txt").unlink()
    assert sync(a) == 0

    rows = one_pass(b, remote, [])  # a moved head: nothing to rescan here

    assert (b / "d3" / "f61.txt").read_text() == "edited\n"
    assert not (b / "d4" / "f80.txt").exists()
    assert rows["every base"] == 0
    assert rows["by path"] + rows["below a folder"] <= 6


def test_an_idle_full_rescan_reads_no_base_but_what_it_kept(
    two: tuple[Path, Path], remote: Path
) -> None:
    """The one O(files) step: a full rescan, stat only, compared folder by folder with
    what state.sqlite tracks (`sync.folderrows`): it reads no base but those of what it
    kept (folders, and files written too recently for the stat cache to vouch for)."""
    a, _ = two
    rows = one_pass(a, remote, None)
    assert rows["every base"] == 0 and rows["by path"] <= FILES + FILES // 20


def test_a_conflict_left_open_ends_in_a_pass_over_its_copy(
    two: tuple[Path, Path], remote: Path
) -> None:
    """The person deletes the conflict copy; the watcher reports only the copy. The
    conflicted path was left open, so this pass decides it again and sees it resolved."""
    a, b = two
    (a / "d0" / "f1.txt").write_text("a's edit\n")
    (b / "d0" / "f1.txt").write_text("b's edit\n")
    assert sync(a) == 0
    assert sync(b) == 4  # a conflict
    (copy,) = (b / "d0").glob("f1.conflict-a-*.txt")
    copy.unlink()

    one_pass(b, remote, [f"d0/{copy.name}"])

    assert published(remote, "b")["d0/f1.txt"] == sha(b"b's edit\n")
    assert sync(b) == 0  # nothing left open


def test_a_download_that_failed_is_retried_by_a_pass_over_other_paths(
    two: tuple[Path, Path], remote: Path
) -> None:
    """a's edit was marked processed with the pass that failed to download it: only what
    that pass left open brings it back (no later change of a's would)."""
    a, b = two
    (a / "d3" / "f61.txt").write_text("edited\n")
    assert sync(a) == 0
    missing = FaultStore(LocalStore(remote))
    missing.fail("get", NotFound, prefix=KEYS.blobs_prefix)
    missing.fail("get_file", NotFound, prefix=KEYS.blobs_prefix)
    one_pass(b, remote, [], store=missing)
    assert (b / "d3" / "f61.txt").read_text() == "file 61\n"

    one_pass(b, remote, ["d9/f199.txt"])

    assert (b / "d3" / "f61.txt").read_text() == "edited\n"


def test_the_full_check_stops_a_pass_that_missed_a_path(
    two: tuple[Path, Path], remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Forget what a failed download left open: the pass over what changed misses the
    path, `--check-full` says so and changes nothing, `--full-reconcile` repairs it."""
    a, b = two
    (a / "d3" / "f61.txt").write_text("edited\n")
    assert sync(a) == 0
    missing = FaultStore(LocalStore(remote))
    missing.fail("get", NotFound, prefix=KEYS.blobs_prefix)
    missing.fail("get_file", NotFound, prefix=KEYS.blobs_prefix)
    one_pass(b, remote, [], store=missing)
    state = State.open(RootPaths(b).state)
    state.replace_pending([])
    state.close()
    capsys.readouterr()

    assert sync(b, "--check-full") == 1
    assert "the plans differ" in capsys.readouterr().err
    assert sync(b) == 0 and (b / "d3" / "f61.txt").read_text() == "file 61\n"  # missed
    assert sync(b, "--full-reconcile", "--check-full") == 0
    assert (b / "d3" / "f61.txt").read_text() == "edited\n"


def test_a_changed_ignore_file_reconciles_every_path(two: tuple[Path, Path], remote: Path) -> None:
    """The watcher reports only `.dropbearignore`: the paths it now covers stop being
    tracked all the same (left on disk, no tombstone, out of the listing)."""
    a, _ = two
    (a / ".dropbearignore").write_text("d1/\n")

    rows = one_pass(a, remote, [".dropbearignore"])

    assert rows["every base"] >= 1
    listed = published(remote, "a")
    assert ".dropbearignore" in listed and not any(p.startswith("d1/") for p in listed)
    assert (a / "d1" / "f20.txt").exists()
    assert not [k for k in bucket_keys(remote) if "/tombstones/" in k]
