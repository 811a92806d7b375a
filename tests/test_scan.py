"""The local scan: what it records, what it leaves out, when it hashes, how it reports trouble."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

import anyio
import pytest

import dropbeard
from dropbeard.core.chunking import Chunk, MiB
from dropbeard.core.errors import OfflineError
from dropbeard.core.ignore import IgnoreRules
from dropbeard.sync.hashing import CHUNK, StatKey
from dropbeard.sync.partfiles import PREFIX, part_name
from dropbeard.sync.scan import LocalItem, ScanResult, scan

pytestmark = pytest.mark.anyio

NO_RULES = IgnoreRules.empty()
Cached = tuple[StatKey, str, tuple[Chunk, ...] | None]
Cache = dict[str, Cached]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_of(result: ScanResult) -> Cache:
    return {
        p: (i.stat, i.sha256, i.chunks)
        for p, i in result.items.items()
        if i.stat is not None and i.sha256 is not None
    }


async def run(
    root: Path,
    cache: Cache | Callable[[str], Cached | None] | None = None,
    rules: IgnoreRules = NO_RULES,
    only: Collection[str] | None = None,
    **kw: object,
) -> ScanResult:
    lookup = cache.get if isinstance(cache, dict) else cache or (lambda _p: None)
    return await scan(root, ignore=rules, cache=lookup, only=only, **kw)  # type: ignore[arg-type]


def kinds(result: ScanResult) -> dict[str, str]:
    return {p.path: p.kind for p in result.problems}


def on_disk(root: Path) -> list[tuple[str, bool]]:
    return [(str(p.relative_to(root)), p.is_dir()) for p in root.rglob("*")]


def touch_bytes(path: bytes) -> None:
    with open(path, "wb"):
        pass


def write(root: Path, rel: str, data: bytes = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- what is recorded -----------------------------------------------------------------


async def test_records_files_dirs_and_symlinks(tmp_path: Path) -> None:
    write(tmp_path, "docs/a.md", b"hello")
    (tmp_path / "docs/a.md").chmod(0o600)
    (tmp_path / "docs").chmod(0o750)
    write(tmp_path, "empty")
    (tmp_path / "empty").write_bytes(b"")
    os.symlink("docs/a.md", tmp_path / "current")

    result = await run(tmp_path)

    assert set(result.items) == {"docs", "docs/a.md", "empty", "current"}
    doc = result.items["docs/a.md"]
    assert (doc.type, doc.mode, doc.sha256, doc.target) == ("file", 0o600, sha(b"hello"), None)
    st = (tmp_path / "docs/a.md").stat()
    assert doc.stat == StatKey(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    assert result.items["empty"].sha256 == sha(b"")
    assert result.items["docs"] == LocalItem("docs", "dir", 0o750, None, None, None)
    link = result.items["current"]
    assert (link.type, link.target, link.stat, link.sha256) == ("symlink", "docs/a.md", None, None)
    assert result.complete and not result.problems and not result.unreadable
    assert (result.scanned, result.hashed_files, result.hashed_bytes) == (4, 2, 5)


async def test_only_permission_bits_are_recorded(tmp_path: Path) -> None:
    write(tmp_path, "tool", b"#!/bin/sh\n")
    (tmp_path / "tool").chmod(0o4755)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o3777)

    result = await run(tmp_path)

    assert (result.items["tool"].mode, result.items["shared"].mode) == (0o755, 0o777)


async def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.txt")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "to_dir")
    os.symlink("nowhere/at/all", root / "broken")

    result = await run(root)

    assert set(result.items) == {"to_dir", "broken"}
    assert result.items["to_dir"].type == "symlink"
    assert result.items["broken"].target == "nowhere/at/all"


async def test_fifos_and_the_dropbear_folder_are_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    write(tmp_path, ".dropbear/state.sqlite")
    write(tmp_path, "sub/.dropbear/kept.txt")  # only the root's .dropbear is special

    result = await run(tmp_path)

    assert set(result.items) == {"sub", "sub/.dropbear", "sub/.dropbear/kept.txt"}
    assert result.complete and not result.problems


@pytest.mark.parametrize(
    ("holds", "empty"),
    [
        pytest.param("nothing", True, id="only_dropbear"),
        pytest.param("an ignored file", False, id="ignored_file"),
        pytest.param("a fifo", False, id="fifo"),
        pytest.param("an empty folder", False, id="empty_folder"),
        pytest.param("a dangling symlink", False, id="symlink"),
    ],
)
@pytest.mark.parametrize("only", [None, {"elsewhere/x"}], ids=["full", "only"])
async def test_root_empty_means_nothing_at_all_but_dropbear(
    tmp_path: Path, holds: str, empty: bool, only: set[str] | None
) -> None:
    (tmp_path / ".dropbear").mkdir()
    if holds == "an ignored file":
        write(tmp_path, "x.log")
    elif holds == "a fifo":
        os.mkfifo(tmp_path / "pipe")
    elif holds == "an empty folder":
        (tmp_path / "d").mkdir()
    elif holds == "a dangling symlink":
        os.symlink("nowhere", tmp_path / "l")
    result = await run(tmp_path, rules=IgnoreRules.parse("*.log\n"), only=only)
    assert result.root_empty is empty


async def test_a_file_bigger_than_a_chunk_hashes_correctly(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 300_000)  # a partial last chunk, larger than one small read
    write(tmp_path, "big.bin", data)

    result = await run(tmp_path, hash_workers=1)

    assert result.items["big.bin"].sha256 == sha(data)
    assert result.hashed_bytes == len(data)


async def test_any_number_of_hash_workers_gives_the_same_items(tmp_path: Path) -> None:
    for i in range(60):
        write(tmp_path, f"d{i % 7}/f{i}.txt", os.urandom(i * 997))

    one = await run(tmp_path, hash_workers=1)
    three = await run(tmp_path, hash_workers=3)

    assert one.items == three.items
    assert all(i.sha256 == sha((tmp_path / p).read_bytes()) for p, i in one.items.items() if i.stat)


async def test_a_hash_thread_that_fails_leaves_none_waiting(tmp_path: Path) -> None:
    # a hash thread dies on a bug: the scan fails at once, none of the others waits
    for i in range(30):
        write(tmp_path, f"f{i}.txt", os.urandom(100))

    def broken(path: str) -> None:
        raise RuntimeError(f"a bug hashing {path}")

    started = time.monotonic()
    with anyio.fail_after(30), pytest.raises(BaseExceptionGroup) as failed:
        await run(tmp_path, hash_workers=3, _before_final_check=broken)
    assert time.monotonic() - started < 10
    assert failed.value.subgroup(lambda e: "a bug hashing" in str(e)) is not None


async def test_progress_ends_at_the_number_scanned(tmp_path: Path) -> None:
    for i in range(20):
        write(tmp_path, f"d/f{i}")
    seen: list[int] = []

    result = await run(tmp_path, progress=seen.append)

    assert seen and seen[-1] == result.scanned == 21
    assert seen == sorted(seen)


# --- ignore rules ---------------------------------------------------------------------


async def test_ignored_paths_are_left_out_and_not_entered(tmp_path: Path) -> None:
    for rel in ["a.log", "keep.log", "src/x.log", "src/main.py", "build/out.o", "docs/tmp/t"]:
        write(tmp_path, rel)
    # Inside the ignored folder, names that would be problems if it were entered.
    write(tmp_path, "node_modules/pkg/README")
    write(tmp_path, "node_modules/pkg/readme")
    rules = IgnoreRules.parse("*.log\n!keep.log\nbuild/\nnode_modules/\ndocs/**/tmp\n")

    result = await run(tmp_path, rules=rules)

    assert set(result.items) == {"keep.log", "src", "src/main.py", "docs"}
    assert result.complete and not result.problems
    kept = {p for p, is_dir in on_disk(tmp_path) if not rules.matches(p, is_dir)}
    assert set(result.items) == kept


# --- the stat cache -------------------------------------------------------------------


async def test_unchanged_files_reuse_the_cache_without_being_read(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", b"aaa")
    write(tmp_path, "b.txt", b"bbb")
    first = await run(tmp_path)
    cache = cache_of(first)
    # A cached digest that is deliberately wrong shows whether the file was read again.
    cache["a.txt"] = (cache["a.txt"][0], "0" * 64, None)

    again = await run(tmp_path, cache)

    assert again.hashed_files == 0
    assert again.items["a.txt"].sha256 == "0" * 64
    assert again.items["b.txt"] == first.items["b.txt"]


async def test_changed_stat_means_rehash(tmp_path: Path) -> None:
    write(tmp_path, "touched.txt", b"same")
    write(tmp_path, "swapped.txt", b"1111")
    write(tmp_path, "still.txt", b"zzz")
    first = await run(tmp_path)
    os.utime(tmp_path / "touched.txt", ns=(1, 1_000_000_000))
    # Same size and mtime, new bytes: only inode/ctime tell, and they must be enough.
    old = (tmp_path / "swapped.txt").stat()
    write(tmp_path, "swapped.new", b"2222")
    os.replace(tmp_path / "swapped.new", tmp_path / "swapped.txt")
    os.utime(tmp_path / "swapped.txt", ns=(old.st_atime_ns, old.st_mtime_ns))

    again = await run(tmp_path, cache_of(first))

    assert again.hashed_files == 2
    assert again.items["touched.txt"].sha256 == sha(b"same")
    assert again.items["swapped.txt"].sha256 == sha(b"2222")
    assert again.items["still.txt"] == first.items["still.txt"]


# --- large files: chunks (SPEC 1.6) ----------------------------------------------------


def random_file(root: Path, rel: str, size: int) -> bytes:
    data = hashlib.shake_128(rel.encode()).digest(size)
    write(root, rel, data)
    return data


async def test_a_file_over_16_mib_is_digested_into_chunks(tmp_path: Path) -> None:
    big = random_file(tmp_path, "big.bin", 20 * MiB)
    random_file(tmp_path, "edge.bin", 16 * MiB)  # 16 MiB or less: one blob

    result = await run(tmp_path)

    item = result.items["big.bin"]
    assert item.sha256 == sha(big) and item.chunks is not None and len(item.chunks) > 1
    at = 0
    for chunk in item.chunks:
        assert chunk.sha256 == sha(big[at : at + chunk.size])
        at += chunk.size
    assert at == len(big)
    assert result.items["edge.bin"].chunks is None
    assert (result.hashed_files, result.hashed_bytes) == (2, 36 * MiB)


async def test_an_unchanged_large_file_keeps_its_cached_chunks_without_being_read(
    tmp_path: Path,
) -> None:
    random_file(tmp_path, "big.bin", 20 * MiB)
    first = await run(tmp_path)
    cache = cache_of(first)
    # A cached list that is deliberately wrong shows whether the file was read again.
    stamps, digest, _ = cache["big.bin"]
    cache["big.bin"] = (stamps, digest, (Chunk("0" * 64, 20 * MiB),))

    again = await run(tmp_path, cache)

    assert again.hashed_files == 0
    assert again.items["big.bin"].chunks == (Chunk("0" * 64, 20 * MiB),)


async def test_a_large_file_cached_without_chunks_is_read_again(tmp_path: Path) -> None:
    """A row from before files were chunked (or a list that did not decode) is a miss."""
    random_file(tmp_path, "big.bin", 20 * MiB)
    first = await run(tmp_path)
    cache = cache_of(first)
    stamps, digest, _ = cache["big.bin"]
    cache["big.bin"] = (stamps, digest, None)

    again = await run(tmp_path, cache)

    assert again.hashed_files == 1
    assert again.items["big.bin"] == first.items["big.bin"]


async def test_a_large_file_changed_while_chunked_is_a_problem_not_a_digest(
    tmp_path: Path,
) -> None:
    random_file(tmp_path, "big.bin", 20 * MiB)

    def edit(path: str) -> None:
        with open(tmp_path / path, "r+b") as f:
            f.write(b"edited while read")

    result = await run(tmp_path, _before_final_check=edit)

    assert "big.bin" not in result.items
    assert kinds(result) == {"big.bin": "changed_while_reading"}


# --- only= ----------------------------------------------------------------------------


async def test_only_scans_just_the_given_paths(tmp_path: Path) -> None:
    for rel in ["a/one", "a/deep/two", "b/three", "top", "other"]:
        write(tmp_path, rel)

    result = await run(tmp_path, only=["a", "top", "a/deep/two", "gone/file"])

    assert set(result.items) == {"a", "a/one", "a/deep", "a/deep/two", "top"}
    assert result.hashed_files == 3
    assert result.complete and not result.unreadable


async def test_only_sees_the_conflict_copies_beside_its_paths(tmp_path: Path) -> None:
    """Whether a conflict is over is whether its copies are still there: a pass over the
    conflicted path sees them (and no other copy, nor other neighbours)."""
    copy = "d/a.conflict-desktop-20260522T180500Z.txt"
    for rel in ["d/a.txt", copy, "d/b.conflict-desktop-20260522T180500Z.txt", "d/c.txt"]:
        write(tmp_path, rel)

    result = await run(tmp_path, only=["d/a.txt"])

    assert set(result.items) == {"d/a.txt", copy}


async def test_only_skips_symlinked_parents_and_ignored_dirs(tmp_path: Path) -> None:
    write(tmp_path, "outside/secret")
    root = tmp_path / "root"
    write(root, "build/out.o")
    write(root, "real/file")
    os.symlink(tmp_path / "outside", root / "link")

    result = await run(
        root, rules=IgnoreRules.parse("build/"), only=["link/secret", "build/out.o", "real/file"]
    )

    assert set(result.items) == {"real/file"}


# --- names ----------------------------------------------------------------------------


async def test_non_nfc_names_get_an_nfc_path_and_keep_their_disk_path(tmp_path: Path) -> None:
    nfd_dir, nfd_file = "Cafe\u0301", "Ame\u0301lie.txt"
    write(tmp_path, f"{nfd_dir}/{nfd_file}", b"menu")
    write(tmp_path, f"{nfd_dir}/plain.txt", b"plain")

    result = await run(tmp_path)

    folder = result.items["Caf\u00e9"]
    assert folder.disk_path == nfd_dir
    menu = result.items["Caf\u00e9/Am\u00e9lie.txt"]
    assert (menu.disk_path, menu.sha256) == (f"{nfd_dir}/{nfd_file}", sha(b"menu"))
    assert result.items["Caf\u00e9/plain.txt"].disk_path == f"{nfd_dir}/plain.txt"
    # The daemon may pass either spelling.
    only = await run(tmp_path, only=[f"{nfd_dir}/{nfd_file}"])
    assert set(only.items) == {"Caf\u00e9/Am\u00e9lie.txt"}


async def test_two_spellings_of_one_name_are_problems_and_left_out(tmp_path: Path) -> None:
    write(tmp_path, "Caf\u00e9/x")  # NFC folder ...
    write(tmp_path, "Cafe\u0301/y")  # ... and its NFD twin: one path, twice
    write(tmp_path, "fine.txt")

    result = await run(tmp_path)

    assert set(result.items) == {"fine.txt"}
    assert kinds(result) == {"Caf\u00e9": "name_collision"}
    assert "Unicode normalisation" in result.problems[0].message
    assert result.unreadable == {"Caf\u00e9"}
    inside = await run(tmp_path, only=["Caf\u00e9/x", "fine.txt"])
    assert set(inside.items) == {"fine.txt"}
    assert kinds(inside) == {"Caf\u00e9": "name_collision"}


async def test_names_that_differ_only_in_case_are_two_paths(tmp_path: Path) -> None:
    write(tmp_path, "README.md", b"upper")
    write(tmp_path, "readme.md", b"lower")
    write(tmp_path, "\u00c9t\u00e9/x", b"upper")
    write(tmp_path, "\u00e9t\u00e9/x", b"lower")

    result = await run(tmp_path)

    assert result.problems == []
    assert {p: i.sha256 for p, i in result.items.items() if i.type == "file"} == {
        "README.md": sha(b"upper"),
        "readme.md": sha(b"lower"),
        "\u00c9t\u00e9/x": sha(b"upper"),
        "\u00e9t\u00e9/x": sha(b"lower"),
    }


async def test_invalid_utf8_names_are_problems(tmp_path: Path) -> None:
    base = os.fsencode(tmp_path)
    os.mkdir(base + b"/bad\xffdir")
    touch_bytes(base + b"/bad\xffdir/inside")
    touch_bytes(base + b"/bad\xfe.txt")
    os.symlink(b"target\xff", base + b"/badlink")
    write(tmp_path, "fine.txt")

    result = await run(tmp_path)

    assert set(result.items) == {"fine.txt"}
    assert kinds(result) == {
        "bad\\xffdir": "invalid_name",
        "bad\\xfe.txt": "invalid_name",
        "badlink": "invalid_name",
    }
    assert "bad\\xffdir" in result.unreadable


# --- trouble --------------------------------------------------------------------------


async def test_a_file_changing_while_hashed_is_not_returned(tmp_path: Path) -> None:
    write(tmp_path, "grow.log", b"first line\n")
    write(tmp_path, "calm.txt", b"calm")

    def append(path: str) -> None:
        if path == "grow.log":
            with open(tmp_path / "grow.log", "ab") as f:
                f.write(b"second line\n")

    result = await run(tmp_path, _before_final_check=append)

    assert "grow.log" not in result.items
    assert kinds(result) == {"grow.log": "changed_while_reading"}
    assert result.unreadable == {"grow.log"}
    assert result.items["calm.txt"].sha256 == sha(b"calm")
    again = await run(tmp_path)  # the next pass picks it up
    assert again.items["grow.log"].sha256 == sha(b"first line\nsecond line\n")


async def test_a_file_replaced_after_listing_is_not_returned(tmp_path: Path) -> None:
    write(tmp_path, "doc.txt", b"old")

    def cache(path: str) -> None:  # runs on the walk thread, right after the file's lstat
        write(tmp_path, path, b"new and longer")

    result = await run(tmp_path, cache)

    assert "doc.txt" not in result.items
    assert kinds(result) == {"doc.txt": "changed_while_reading"}


async def test_a_folder_replaced_during_the_walk_is_unknown_not_empty(tmp_path: Path) -> None:
    write(tmp_path, "trigger.txt")
    write(tmp_path, "victim/precious.txt")

    def cache(path: str) -> None:  # root files are recorded before any subfolder is walked
        if path == "trigger.txt":
            shutil.rmtree(tmp_path / "victim")
            os.symlink("nowhere", tmp_path / "victim")

    result = await run(tmp_path, cache)

    assert "victim/precious.txt" not in result.items
    assert "victim" in result.unreadable
    assert not result.complete


async def test_a_missing_or_non_folder_root_is_offline(tmp_path: Path) -> None:
    with pytest.raises(OfflineError):
        await run(tmp_path / "unmounted")
    write(tmp_path, "file")
    with pytest.raises(OfflineError):
        await run(tmp_path / "file")


PERMISSION_SCRIPT = """
import anyio, json, sys
from pathlib import Path
from dropbeard.core.ignore import IgnoreRules
from dropbeard.sync.scan import scan
r = anyio.run(lambda: scan(Path(sys.argv[1]), ignore=IgnoreRules.empty(), cache=lambda p: None))
print(json.dumps({"items": sorted(r.items), "problems": {p.path: p.kind for p in r.problems},
                  "unreadable": sorted(r.unreadable), "complete": r.complete}))
"""


def without_root_powers() -> list[str]:
    """Root reads through chmod 000; without its DAC capabilities it cannot."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop DAC capabilities")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_permission_denied_is_a_problem_not_a_delete(tmp_path: Path) -> None:
    write(tmp_path, "locked/inside.txt")
    write(tmp_path, "secret.txt")
    write(tmp_path, "open.txt")
    (tmp_path / "locked").chmod(0o000)
    (tmp_path / "secret.txt").chmod(0o000)
    command = [*without_root_powers(), sys.executable, "-c", PERMISSION_SCRIPT, str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(dropbeard.__file__).parents[1])}
    try:
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    finally:
        (tmp_path / "locked").chmod(0o755)  # so pytest can clean up
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)

    assert seen["items"] == ["locked", "open.txt"]  # the folder exists; its contents unknown
    assert seen["problems"] == {"locked": "permission", "secret.txt": "permission"}
    assert seen["unreadable"] == ["locked", "secret.txt"]
    assert seen["complete"] is False


async def test_downloads_in_progress_are_not_synced_and_a_dead_runs_are_removed(
    tmp_path: Path,
) -> None:
    write(tmp_path, "docs/a.txt", b"a")
    mine = write(tmp_path, f"docs/{part_name()}", b"half of a download")
    dead = write(tmp_path, f"docs/{PREFIX}0badc0ffee00-7", b"left by a crash")
    top = write(tmp_path, f"{PREFIX}0badc0ffee00-8", b"left by a crash")
    folder = tmp_path / f"{PREFIX}0badc0ffee00-9"
    folder.mkdir()  # not a file: not ours to remove

    result = await run(tmp_path)

    assert set(result.items) == {"docs", "docs/a.txt"}
    assert mine.exists()  # this process may still be writing it
    assert not dead.exists() and not top.exists()
    assert folder.is_dir()
