"""The on-disk spelling of NFC paths (dropbeard.sync.disknames), and applying a plan to
names spelled in NFD on disk (dropbeard.sync.apply): every operation goes to the
spelling the disk holds, and no NFC twin is ever made beside it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.core.plan import ConflictCopy, Download, LocalDelete, Plan
from dropbeard.store.local import LocalStore
from dropbeard.sync.apply import Applied, apply_plan
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.disknames import DiskNames, folds_case
from dropbeard.sync.root import RootPaths, reset_tmp
from dropbeard.sync.scan import ScanResult, scan

pytestmark = pytest.mark.anyio

KEYS = RootKeys("r1")
NFD_DIR, NFD_FILE = "Cafe\u0301", "Ame\u0301lie.txt"
NFC_DIR, NFC_FILE = "Caf\u00e9", "Am\u00e9lie.txt"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes) -> Entry:
    return Entry(
        path=path,
        type="file",
        mode=0o644,
        version={"b": 1},
        size=len(data),
        mtime_ns=1_700_000_000_000_000_000,
        sha256=sha(data),
    )


def write(root: Path, rel: str, data: bytes = b"x") -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)


async def scanned(root: Path) -> ScanResult:
    return await scan(root, ignore=IgnoreRules.empty(), cache=lambda _p: None)


# --- DiskNames --------------------------------------------------------------------------


async def test_a_scanned_path_keeps_its_recorded_spelling(tmp_path: Path) -> None:
    write(tmp_path, f"{NFD_DIR}/{NFD_FILE}")
    names = DiskNames(tmp_path, (await scanned(tmp_path)).items)

    assert names.disk(f"{NFC_DIR}/{NFC_FILE}") == f"{NFD_DIR}/{NFD_FILE}"
    assert names.disk(NFC_DIR) == NFD_DIR
    # a name nothing spells yet, below a scanned folder: NFC, in the folder's spelling
    assert names.disk(f"{NFC_DIR}/n\u00e9w.txt") == f"{NFD_DIR}/n\u00e9w.txt"
    assert names.disk(f"{NFC_DIR}/sub/x") == f"{NFD_DIR}/sub/x"


def test_without_a_scan_the_folder_listing_gives_the_spelling(tmp_path: Path) -> None:
    write(tmp_path, f"{NFD_DIR}/{NFD_FILE}")
    write(tmp_path, "plain/r\u00e9sum\u00e9.txt")  # already NFC on disk
    names = DiskNames(tmp_path, {})

    assert names.disk(f"{NFC_DIR}/{NFC_FILE}") == f"{NFD_DIR}/{NFD_FILE}"
    assert names.disk("plain/r\u00e9sum\u00e9.txt") == "plain/r\u00e9sum\u00e9.txt"
    assert names.disk("missing/\u00e9") == "missing/\u00e9"


def test_the_exact_spelling_wins_over_an_equivalent_one(tmp_path: Path) -> None:
    write(tmp_path, NFC_FILE)
    write(tmp_path, NFD_FILE)  # twins: a collision the scan reports; never NFD for NFC

    assert DiskNames(tmp_path, {}).disk(NFC_FILE) == NFC_FILE


# --- applying a plan --------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / ".dropbear").mkdir(parents=True)
    reset_tmp(RootPaths(root))
    (tmp_path / "remote").mkdir()
    return root


async def apply(root: Path, plan: Plan, blobs: Sequence[bytes] = ()) -> Applied:
    store = LocalStore(root.parent / "remote")
    for data in blobs:
        await store.put(KEYS.blob(sha(data)), data)
    return await apply_plan(
        RootPaths(root), store, KEYS, plan, await scanned(root), budget=TransferBudget(2)
    )


def listing(root: Path, rel: str = "") -> list[str]:
    return sorted(n for n in os.listdir(root / rel) if n != ".dropbear")


async def test_a_download_replaces_the_nfd_spelled_file(root: Path) -> None:
    write(root, f"{NFD_DIR}/{NFD_FILE}", b"old")
    path = f"{NFC_DIR}/{NFC_FILE}"
    new = file_entry(path, b"new bytes")

    out = await apply(
        root, Plan(publishes=False, downloads=[Download(path=path, entry=new)]), [b"new bytes"]
    )

    assert (out.failed, out.problems, out.downloaded) == (set(), [], 1)
    assert (root / NFD_DIR / NFD_FILE).read_bytes() == b"new bytes"
    assert listing(root) == [NFD_DIR] and listing(root, NFD_DIR) == [NFD_FILE]
    assert path in out.stats  # recorded under its NFC path: not re-hashed next pass


async def test_a_delete_removes_the_nfd_spelled_file(root: Path) -> None:
    write(root, f"{NFD_DIR}/{NFD_FILE}", b"doomed")
    write(root, f"{NFD_DIR}/other", b"stays")
    path = f"{NFC_DIR}/{NFC_FILE}"
    gone = LocalDelete(path=path, expected=file_entry(path, b"doomed"))

    out = await apply(root, Plan(publishes=False, local_deletes=[gone]))

    assert (out.failed, out.deleted) == (set(), 1)
    assert listing(root, NFD_DIR) == ["other"]


async def test_new_files_and_copies_land_in_the_nfd_spelled_folder(root: Path) -> None:
    write(root, f"{NFD_DIR}/{NFD_FILE}", b"local")
    path = f"{NFC_DIR}/{NFC_FILE}"
    copy = f"{NFC_DIR}/Am\u00e9lie.conflict-a-20260101T000000Z.txt"
    plan = Plan(
        publishes=False,
        downloads=[
            Download(path=f"{NFC_DIR}/new.txt", entry=file_entry(f"{NFC_DIR}/new.txt", b"new"))
        ],
        conflict_copies=[
            ConflictCopy(path=path, copy_path=copy, device_id="a", entry=file_entry(path, b"a"))
        ],
    )

    out = await apply(root, plan, [b"new", b"a"])

    assert out.failed == set()
    assert listing(root) == [NFD_DIR]
    assert listing(root, NFD_DIR) == sorted([NFD_FILE, "new.txt", copy.rpartition("/")[2]])
    assert (root / NFD_DIR / NFD_FILE).read_bytes() == b"local"


# --- a filesystem that does not tell names apart by case --------------------------------


def test_this_filesystem_tells_case_apart_and_the_probe_leaves_nothing(tmp_path: Path) -> None:
    assert folds_case(tmp_path) is False  # the test machine's ext4/tmpfs
    assert os.listdir(tmp_path) == []


async def test_twins_the_filesystem_cannot_hold_apart_are_problems_not_overwrites(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dropbeard.sync.disknames.folds_case", lambda _folder: True)
    write(root, "docs/notes.txt", b"on disk")
    plan = Plan(
        publishes=False,
        downloads=[
            Download(path="A.txt", entry=file_entry("A.txt", b"upper")),
            Download(path="a.txt", entry=file_entry("a.txt", b"lower")),
            Download(path="Docs/new.txt", entry=file_entry("Docs/new.txt", b"new")),
            Download(path="docs/Notes.txt", entry=file_entry("docs/Notes.txt", b"other")),
        ],
    )

    out = await apply(root, plan, [b"upper", b"lower", b"new", b"other"])

    assert out.failed == {"a.txt", "Docs/new.txt", "docs/Notes.txt"}
    assert {p.path: p.kind for p in out.problems} == dict.fromkeys(out.failed, "case_collision")
    assert out.downloaded == 1  # the refused twins are not even fetched
    assert listing(root) == ["A.txt", "docs"]
    assert (root / "A.txt").read_bytes() == b"upper"
    assert listing(root, "docs") == ["notes.txt"]
    assert (root / "docs/notes.txt").read_bytes() == b"on disk"
