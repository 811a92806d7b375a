"""Three real devices sharing one local-directory remote, driven by hypothesis.

The stateful twin of tests/test_reconcile_sim.py, over the real engine: three roots in a
temporary folder (`dropbeard init … --root-id r1 --device-id a|b|c`), one LocalStore remote,
every pass a real `dropbeard sync --json` run in-process through `dropbeard.cli.main`.
People create, edit, delete, rename and chmod files from a tiny universe of names (so
concurrent changes of one path are frequent), make and remove empty folders, change what a
path is (file <-> folder <-> symlink, a folder taking everything below it along), leave a
FIFO where another device may publish a file, settle conflicts by deleting their copies,
and devices sync in any order. One name of the
universe is not ASCII: a person may create it spelled NFD on disk, as macOS does, and
every later operation (theirs and dropbeard's) keeps the spelling the disk holds (SPEC
2, 4 step 2); paths are compared in NFC. People also edit `.dropbearignore` (a synced
file) to ignore `a.txt` or not, or delete it: ignored paths are local-only both ways.

Checked on every pass: `sync` exits 0 or 4 (4 = conflicts or problems remain), never
anything else; it never touches what the device holds at a path its rules ignore (never
downloaded there, replaced or deleted), and never leaves one path spelled twice on disk.
`keep.txt`, made on `a` and synced everywhere before the first step and never touched
again, keeps every root from looking emptied, so the mass-delete guard (SPEC 6, exit 1)
never fires on a person deleting their last file.

Checked at the end, after rounds of syncs with no edits (every device, in order, until a
round changes nothing; at most 4 rounds):

1. **Nothing was lost.** A *content* is `(path, bytes, mode)` of a regular file. Every
   content a device held at a tracked path (not a conflict copy) when a pass of it began
   is *published* (the pass scans it; it is what the device offered the others). At the
   end, every published content must be on some device, at its path or in a conflict
   copy of that path (same bytes and mode), unless it was *superseded*: a person, on a
   device whose disk held that content at that path, edited, deleted, chmod-ed or renamed
   it away, or deleted a conflict copy holding it (a resolution). Such a change is
   causally after the content (the device had it), so the engine may let it replace the
   content everywhere; nothing else may. This fails if the engine silently drops a
   version: last-writer-wins on two concurrent creates or edits of one path, an edit lost
   to a concurrent delete, a download over an unsynced local edit, a conflict copy never
   written.
   A file a device ignores counts too: nothing ever deletes or replaces it but the person.
2. **Everybody agrees, conflicts apart.** Every device holds the same tree (types, modes,
   bytes; empty folders included) except conflict copies, the paths in conflict on
   some device (SPEC 4.4: while a conflict is open its device keeps its own version and
   leaves the path out of its tree, so that path cannot agree yet), and the paths
   some device's `.dropbearignore` ignores (local-only, SPEC 2), the paths where a
   device refused a delete naming other bytes than its file (SPEC 4.1: e.g. a conflict
   resolved elsewhere by deleting, by a device this one never saw holding its version;
   kept, and a problem), the paths with a type clash or a special file in the way (SPEC
   4.1, 4.3: problems until a person acts), everything below those, and the special
   files themselves.
3. **Once the people settle every conflict and problem** (delete the copies on each
   device with an open conflict, and follow each refused delete by hand; where a type
   clash left nothing to copy, remove the local file or symlink so the other devices'
   folder can come; remove the FIFOs; then sync: SPEC 4.4 resolution) every device holds
   the same tree, with no conflict copy, every pass exits 0, and one more pass on each
   device is idle: it publishes nothing (`"snapshot": null`) and changes nothing on disk.
   (Ignored paths apart: only root-level files are ignored, because a folder another
   device deleted cannot go here while it holds an ignored file, which stays a problem.)

Once in a run, a person may copy a device's folder onto a backup drive and make it a
fourth device, `s`, in `archive-only` mode (SPEC 3, 4.2): it must take the remote versions
of what it was seeded with, with no conflict, and after settling hold everything the
others agree on (and what they deleted since: an archive keeps it), with no conflict
open and an idle pass that changes nothing; but where the others replaced a folder whose
content the archive keeps, the archive keeps the folder and holds their file or symlink
beside it as a conflict copy, the one conflict it may have. It never publishes, so the three others
cannot tell it exists: checks 1-3 are theirs alone.

Each person's rule draws the device and path it acts on from what exists (the draws show
in a failing case's steps) and runs only when there is something to act on, so no step is
wasted. Check 1 was seen to fail within these settings against engines patched to keep
the last writer, to skip conflict copies, or to let a delete beat a concurrent edit; the
per-pass checks against engines that wrote to the NFC spelling of an NFD name, or took
other devices' changes to ignored paths.
Failures print the steps (hypothesis' stateful reproduction); the examples are random but a
failing one is replayed from the local hypothesis database.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Literal

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from dropbeard.cli.main import main
from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.ignore import IGNORE_FILE, IgnoreRules
from tests.converge import ROOT_ID, Result
from tests.converge import tree as disk_tree

pytestmark = pytest.mark.slow

DEVICES = ["a", "b", "c"]
ARCHIVE = "s"  # the archive-only device seeded by hand, once a run chooses to
MENU = "Caf\u00e9/m\u00e9nu.txt"  # made on a Mac: Cafe\u0301/me\u0301nu.txt on disk
FILES = ["a.txt", "d/b.txt", "d/e/c.txt", MENU]
DIRS = ["d", "d/e", "f"]
RETYPED = ["a.txt", "d", "f"]  # paths whose type people change
KINDS = ["file", "folder", "symlink"]
INSIDE = "inside.txt"  # the file a path turned folder holds
MODES = [0o644, 0o600, 0o755]
ANCHOR = "keep.txt"
OK_CODES = (0, 4)  # 4: conflicts or problems remain
MAX_ROUNDS = 4

Content = tuple[str, bytes, int]  # (path, bytes, mode) of a regular file

# Small contents, often shared (two devices writing the same bytes merge quietly), else
# a fresh unique one (None) so a lost version is told apart from a surviving one.
CONTENTS = st.one_of(st.none(), st.sampled_from([b"", b"x\n", b"same on both\n"]))
# What a person keeps in `.dropbearignore` (None: no such file).
IGNORES = [None, "a.txt\n", "# nothing ignored\n"]


def nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a person sees in a root, by NFC path (an NFD name on disk is the same path)."""
    return {nfc(rel): item for rel, item in disk_tree(root).items()}


def kind(p: Path) -> str | None:
    """What is at `p`: file, folder, symlink, special, or None."""
    try:
        mode = os.lstat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "folder"
    return "file" if stat.S_ISREG(mode) else "special"


def run_cli(*argv: str) -> Result:
    """`dropbeard ARGS` in this process, its output captured (no pytest fixture needed)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


class ThreeRealDevices(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.ok = False  # set once a step finished; teardown checks only clean runs
        self.tmp = Path(tempfile.mkdtemp(prefix="dropbeard-stateful-"))
        self.remote = self.tmp / "remote"
        self.remote.mkdir()
        self.roots = {d: self.tmp / f"root-{d}" for d in DEVICES}
        self.serial = 0
        self.published: set[Content] = set()
        self.superseded: set[Content] = set()
        self.log: list[str] = []  # what happened, shown when a check fails
        self.archive = self.tmp / f"root-{ARCHIVE}"
        self.seeded = False
        for d in DEVICES:
            got = run_cli(
                "init",
                str(self.roots[d]),
                "--remote",
                str(self.remote),
                "--root-id",
                ROOT_ID,
                "--device-id",
                d,
                "-q",
            )
            assert got.code == 0, got.err
        (self.roots["a"] / ANCHOR).write_bytes(b"keeps the root from looking emptied\n")
        for d in DEVICES:
            self._sync(d)
        self.ok = True

    # --- the people ----------------------------------------------------------------

    def _at(self, device: str, rel: str, spell: Literal["NFC", "NFD"] = "NFC") -> Path:
        """Where the NFC path `rel` is on `device`'s disk: each name in the spelling the
        disk holds, a name not there yet spelled `spell`."""
        at = self.roots[device]
        for name in rel.split("/"):
            here = os.listdir(at) if at.is_dir() and not at.is_symlink() else []
            same = [n for n in here if nfc(n) == name]
            at = at / (same[0] if same else unicodedata.normalize(spell, name))
        return at

    def _file(self, device: str, rel: str) -> Path | None:
        p = self._at(device, rel)
        return p if p.is_file() and not p.is_symlink() else None

    def _content(self, device: str, rel: str) -> Content:
        p = self._at(device, rel)
        return (rel, p.read_bytes(), stat.S_IMODE(os.lstat(p).st_mode))

    def _fresh(self, device: str, data: bytes | None) -> bytes:
        if data is not None:
            return data
        self.serial += 1
        return f"{device} wrote version {self.serial}\n".encode()

    # Every rule draws what it acts on from what is there (the draws show in a failing
    # case's steps), and runs only when there is something: no step is wasted.

    def _present(self) -> list[tuple[str, str]]:
        return [(d, r) for d in DEVICES for r in FILES if self._file(d, r)]

    def _free(self, device: str, rel: str) -> bool:
        """Nothing at `rel`, and every folder above it a real folder or missing (not a
        file, symlink or FIFO a type change left there)."""
        if os.path.lexists(self._at(device, rel)):
            return False
        parents = [p for p in Path(rel).parents if p != Path(".")]
        return all(kind(self._at(device, p.as_posix())) in ("folder", None) for p in parents)

    def _absent(self) -> list[tuple[str, str]]:
        return [(d, r) for d in DEVICES for r in FILES if self._free(d, r)]

    def _dirs_absent(self) -> list[tuple[str, str]]:
        return [(d, r) for d in DEVICES for r in DIRS if self._free(d, r)]

    def _retypable(self) -> list[tuple[str, str]]:
        return [(d, r) for d in DEVICES for r in RETYPED if kind(self._at(d, r)) in KINDS]

    def _fifo_spots(self) -> list[tuple[str, str]]:
        return [(d, r) for d in DEVICES for r in FILES + RETYPED if self._free(d, r)]

    def _dirs_empty(self) -> list[tuple[str, str]]:
        return [
            (d, r)
            for d in DEVICES
            for r in DIRS
            if (p := self.roots[d] / r).is_dir() and not p.is_symlink() and not any(p.iterdir())
        ]

    def _with_copies(self) -> list[str]:
        return [d for d in DEVICES if self._copies(d)]

    @precondition(lambda self: self._absent())
    @rule(data=st.data(), content=CONTENTS)
    def create(self, data: st.DataObject, content: bytes | None) -> None:
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._absent()), label="create")
        p = self._at(device, rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(self._fresh(device, content))
        self.log.append(f"{device}: create {rel} {p.read_bytes()!r}")
        self.ok = True

    def _menu_absent(self) -> list[str]:
        return [d for d, r in self._absent() if r == MENU]

    @precondition(lambda self: self._menu_absent())
    @rule(data=st.data(), content=CONTENTS)
    def create_on_a_mac(self, data: st.DataObject, content: bytes | None) -> None:
        """Create the non-ASCII file spelled NFD (its folder too, unless already there)."""
        self.ok = False
        device = data.draw(st.sampled_from(self._menu_absent()), label="create NFD")
        p = self._at(device, MENU, "NFD")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(self._fresh(device, content))
        self.log.append(f"{device}: create {str(p.relative_to(self.roots[device]))!a}")
        self.ok = True

    @rule(device=st.sampled_from(DEVICES), rules=st.sampled_from(IGNORES), tidy=st.booleans())
    def edit_ignore_file(self, device: str, rules: str | None, tidy: bool) -> None:
        """Write (or delete) `.dropbearignore`: ignore `a.txt`, or nothing. `tidy`: the
        person also deletes the file the rules now ignore, here only."""
        self.ok = False
        p = self.roots[device] / IGNORE_FILE
        old = self._content(device, IGNORE_FILE) if self._file(device, IGNORE_FILE) else None
        if old is not None and (rules is None or old[1] != rules.encode()):
            self.superseded.add(old)
        if rules is None:
            p.unlink(missing_ok=True)
        else:
            p.write_text(rules)
        self.log.append(f"{device}: {IGNORE_FILE} = {rules!r}")
        ignored = [r for r in FILES if self._rules(device).matches(r, False)]
        for rel in ignored if tidy else []:
            if self._file(device, rel):
                self.superseded.add(self._content(device, rel))
                self._at(device, rel).unlink()
                self.log.append(f"{device}: delete the ignored {rel}")
        self.ok = True

    @precondition(lambda self: self._present())
    @rule(data=st.data(), content=CONTENTS)
    def edit(self, data: st.DataObject, content: bytes | None) -> None:
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._present()), label="edit")
        old = self._content(device, rel)
        new = self._fresh(device, content)
        if new != old[1]:
            self.superseded.add(old)
            self._at(device, rel).write_bytes(new)
            self.log.append(f"{device}: edit {rel} {old[1]!r} -> {new!r}")
        self.ok = True

    @precondition(lambda self: self._present())
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._present()), label="delete")
        self.superseded.add(self._content(device, rel))
        self._at(device, rel).unlink()
        self.log.append(f"{device}: delete {rel}")
        self.ok = True

    @precondition(lambda self: self._present())
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        """Move a file to another name of the universe, replacing the file there if any."""
        self.ok = False
        device, src = data.draw(st.sampled_from(self._present()), label="rename")
        targets = [
            r for r in FILES if r != src and (self._file(device, r) or self._free(device, r))
        ]
        if not targets:  # every other name is below a file a type change left
            self.ok = True
            return
        dst = data.draw(st.sampled_from(targets), label="to")
        self.superseded.add(self._content(device, src))
        if self._file(device, dst):
            self.superseded.add(self._content(device, dst))
        source, target = self._at(device, src), self._at(device, dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        self.log.append(f"{device}: rename {src} -> {dst}")
        self.ok = True

    @precondition(lambda self: self._present())
    @rule(data=st.data(), mode=st.sampled_from(MODES))
    def chmod(self, data: st.DataObject, mode: int) -> None:
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._present()), label="chmod")
        old = self._content(device, rel)
        if old[2] != mode:
            self.superseded.add(old)
            os.chmod(self._at(device, rel), mode)
            self.log.append(f"{device}: chmod {rel} {old[2]:o} -> {mode:o}")
        self.ok = True

    @precondition(lambda self: self._dirs_absent())
    @rule(data=st.data())
    def make_dir(self, data: st.DataObject) -> None:
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._dirs_absent()), label="mkdir")
        (self.roots[device] / rel).mkdir(parents=True)
        self.log.append(f"{device}: mkdir {rel}")
        self.ok = True

    @precondition(lambda self: self._dirs_empty())
    @rule(data=st.data())
    def remove_empty_dir(self, data: st.DataObject) -> None:
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._dirs_empty()), label="rmdir")
        (self.roots[device] / rel).rmdir()
        self.log.append(f"{device}: rmdir {rel}")
        self.ok = True

    @precondition(lambda self: self._retypable())
    @rule(data=st.data(), to=st.sampled_from(KINDS))
    def change_type(self, data: st.DataObject, to: str) -> None:
        """A file, folder or symlink becomes another kind of item: a folder and everything
        in it goes, a file's bytes go (both superseded: the person removed them here)."""
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._retypable()), label="retype")
        p = self._at(device, rel)
        if kind(p) != to:
            self._remove(device, rel)
            if to == "file":
                p.write_bytes(self._fresh(device, None))
            elif to == "folder":
                p.mkdir()
                (p / INSIDE).write_bytes(self._fresh(device, None))
            else:
                os.symlink(ANCHOR, p)
            self.log.append(f"{device}: {rel} becomes a {to}")
        self.ok = True

    @precondition(lambda self: self._fifo_spots())
    @rule(data=st.data())
    def fifo_appears(self, data: st.DataObject) -> None:
        """A FIFO appears where another device may publish a file: never tracked, and in
        the way of such a download (a problem until the person removes it)."""
        self.ok = False
        device, rel = data.draw(st.sampled_from(self._fifo_spots()), label="fifo")
        p = self._at(device, rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(p)
        self.log.append(f"{device}: a FIFO appears at {rel}")
        self.ok = True

    @precondition(lambda self: self._with_copies())
    @rule(data=st.data())
    def settle_conflicts(self, data: st.DataObject) -> None:
        """The person settles a device's conflicts: deletes every conflict copy on it."""
        self.ok = False
        self._delete_copies(data.draw(st.sampled_from(self._with_copies()), label="settle"))
        self.ok = True

    @precondition(lambda self: not self.seeded)
    @rule(data=st.data())
    def seed_archive(self, data: st.DataObject) -> None:
        """A person syncs a device, copies its folder onto a backup drive by hand (what it
        holds in conflict, despite a delete, ignored or kept local-only left out: the others
        do not hold that, and what only the archive holds is its own change, with its own
        version), and
        makes the copy an archive-only device. Its first pass finds every file it holds on
        the others: it adopts their versions quietly, no conflict (SPEC 3)."""
        self.ok = False
        source = data.draw(st.sampled_from(DEVICES), label="seed from")
        self._sync(source)
        in_conflict = {c["path"] for c in self._status(source)["conflicts"]}
        in_conflict |= set(self._refused(source))
        root = self.roots[source]
        rules = self._rules(source)
        db = sqlite3.connect(f"file:{root / '.dropbear' / 'state.sqlite'}?mode=ro", uri=True)
        try:  # what the source published; a leftover folder it keeps local-only is not
            rows = db.execute("SELECT path, base FROM files WHERE base IS NOT NULL").fetchall()
            synced = {path for path, base in rows if json.loads(base).get("entry")}
        finally:
            db.close()

        def left_out(folder: str, names: list[str]) -> set[str]:
            rel = os.path.relpath(folder, root)
            left: set[str] = set()
            for name in names:
                # status names paths in NFC; a Mac-made name is on disk in NFD
                path = nfc(os.path.normpath(os.path.join(rel, name)))
                mode = os.lstat(os.path.join(folder, name)).st_mode
                # a FIFO or socket is never synced (and copying one would block)
                tracked = stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)
                unpublished = path in in_conflict or parse_conflict_name(path)
                unpublished = unpublished or rules.matches(path, stat.S_ISDIR(mode))
                unpublished = unpublished or path not in synced
                if path == ".dropbear" or unpublished or not tracked:
                    left.add(name)
            return left

        shutil.copytree(root, self.archive, symlinks=True, ignore=left_out)
        got = run_cli(
            "init",
            str(self.archive),
            "--remote",
            str(self.remote),
            "--root-id",
            ROOT_ID,
            "--device-id",
            ARCHIVE,
            "--mode",
            "archive-only",
            "-q",
        )
        assert got.code == 0, got.err
        self.seeded = True
        self.log.append(f"{ARCHIVE}: seeded from {source}")
        first = self._sync_archive()
        assert (first["conflicts"], first["conflict_copies"]) == (0, 0), self._why(
            f"{ARCHIVE}: the seeded archive's first pass found conflicts: {first}"
        )
        self.ok = True

    @precondition(lambda self: self.seeded)
    @rule()
    def sync_archive(self) -> None:
        self.ok = False
        self._sync_archive()
        self.ok = True

    @rule(order=st.lists(st.sampled_from(DEVICES), min_size=1, max_size=4))
    def sync(self, order: list[str]) -> None:
        self.ok = False
        for device in order:
            self._sync(device)
        self.ok = True

    # --- the machinery ---------------------------------------------------------------

    def _delete_copies(self, device: str) -> int:
        copies = self._copies(device)
        for rel in copies:
            original = parse_conflict_name(rel)
            assert original is not None
            if self._file(device, rel):
                _, data, mode = self._content(device, rel)
                self.superseded.add((original[0], data, mode))
            self._at(device, rel).unlink()
            self.log.append(f"{device}: delete conflict copy {rel}")
        return len(copies)

    def _copies(self, device: str) -> list[str]:
        """The conflict copies on `device`: files, or symlinks (a symlink's copy)."""
        return [
            rel
            for rel, item in tree(self.roots[device]).items()
            if item[0] in ("file", "symlink") and parse_conflict_name(rel)
        ]

    def _remove(self, device: str, rel: str) -> None:
        """The person removes the item at `rel` (a folder with all it holds): every file
        content they had there is superseded."""
        for file in [f for f in self._files(device) if f == rel or f.startswith(rel + "/")]:
            _, data, mode = self._content(device, file)
            original = parse_conflict_name(file)
            self.superseded.add((original[0] if original else file, data, mode))
        p = self._at(device, rel)
        if kind(p) == "folder":
            shutil.rmtree(p)
        else:
            p.unlink()
        self.log.append(f"{device}: remove {rel}")

    def _settle(self, device: str) -> None:
        """The person settles what a device reports: deletes its conflict copies; follows
        its refused deletes; where a type clash left nothing to copy (the others hold a
        folder there), removes the local file or symlink so that folder can come; removes
        the FIFOs in the way."""
        status = self._status(device)
        self._delete_copies(device)
        self._follow_refused_deletes(device)
        clashes = {p["path"] for p in status["problems"] if p["kind"] == "type_clash"}
        clashes |= {c["path"] for c in status["conflicts"] if not c["copies"]}
        for rel in sorted(clashes):
            if kind(self._at(device, rel)) in ("file", "symlink"):
                self._remove(device, rel)
        for rel, item in tree(self.roots[device]).items():
            if item[0] == "special":
                self._at(device, rel).unlink()
                self.log.append(f"{device}: remove the FIFO at {rel}")

    def _unsettled(self, device: str) -> bool:
        """Open conflicts, problems, or a FIFO on `device`."""
        status = self._status(device)
        specials = any(item[0] == "special" for item in tree(self.roots[device]).values())
        return bool(status["conflicts"] or status["problems"] or specials)

    def _refused(self, device: str) -> list[str]:
        """The paths where `device` refused a delete naming other bytes than its file."""
        problems = self._status(device)["problems"]
        return [p["path"] for p in problems if p["kind"] == "refused_delete"]

    def _follow_refused_deletes(self, device: str) -> None:
        """The person reads the problem and deletes the file by hand, as was done elsewhere."""
        for rel in self._refused(device):
            if on_disk := self._file(device, rel):  # spelled in NFD on disk, maybe
                self.superseded.add(self._content(device, rel))
                on_disk.unlink()
                self.log.append(f"{device}: follow the refused delete of {rel}")

    def _files(self, device: str) -> list[str]:
        return [rel for rel, item in tree(self.roots[device]).items() if item[0] == "file"]

    def _held(self, device: str) -> set[Content]:
        """What `device` holds, conflict copies counted as contents of their path."""
        held: set[Content] = set()
        for rel in self._files(device):
            _, data, mode = self._content(device, rel)
            original = parse_conflict_name(rel)
            held.add((original[0] if original else rel, data, mode))
        return held

    def _sync(self, device: str) -> dict[str, Any]:
        """One pass of `device`; the contents it holds as the pass begins are published."""
        names = list(disk_tree(self.roots[device]))
        twins = sorted(n for n in names if nfc(n) != n and nfc(n) in names)
        assert not twins, self._why(f"{device}: one path spelled twice on disk: {twins}")
        rules = self._rules(device)
        ignored = self._ignored_by(rules, device)
        for rel in self._files(device):
            if parse_conflict_name(rel) is None:
                self.published.add(self._content(device, rel))
        got = run_cli("sync", str(self.roots[device]), "--json", "--check-full")
        summary: dict[str, Any] = got.json if got.out.strip() else {}
        self.log.append(
            f"{device}: sync -> {got.code} "
            + " ".join(
                f"{k}={summary.get(k)}"
                for k in ("downloaded", "deleted_local", "conflicts", "problems", "snapshot")
                if summary.get(k)
            )
        )
        assert got.code in OK_CODES, self._why(f"{device}: sync exited {got.code}: {got.err}")
        # A sync that wrote new rules runs once more with them: what stays ignored under
        # both the old and the new rules is never touched.
        still = self._rules(device)
        before = {p: i for p, i in ignored.items() if still.matches(p, i[0] == "dir")}
        now = {
            p: i
            for p, i in self._ignored_by(rules, device).items()
            if still.matches(p, i[0] == "dir")
        }
        assert now == before, self._why(f"{device}: the pass changed ignored paths: {now}")
        return summary

    def _sync_archive(self) -> dict[str, Any]:
        """One pass of the archive (it publishes nothing: no content of it is tracked)."""
        got = run_cli("sync", str(self.archive), "--json", "--check-full")
        summary: dict[str, Any] = got.json if got.out.strip() else {}
        self.log.append(f"{ARCHIVE}: sync -> {got.code} {got.err.strip()}")
        assert got.code in OK_CODES, self._why(f"{ARCHIVE}: sync exited {got.code}: {got.err}")
        assert summary["snapshot"] is None and summary["uploaded"] == 0
        # Nothing changes on the archive but what it receives: it never makes a version of
        # its own, which would make every later edit elsewhere concurrent with it (SPEC 3).
        db = sqlite3.connect(
            f"file:{self.archive / '.dropbear' / 'state.sqlite'}?mode=ro", uri=True
        )
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()
            rows = db.execute("SELECT path, base FROM files WHERE base IS NOT NULL").fetchall()
        finally:
            db.close()
        own = [p for p, base in rows if f'"{ARCHIVE}"'.encode() in bytes(base)]
        assert row is None or row[0] == "0", self._why(f"{ARCHIVE}: made versions of {own}")
        return summary

    def _check_archive(self, agreed: dict[str, tuple[object, ...]]) -> None:
        """After settling: the archive catches up in one pass and holds everything the
        others agree on, with no conflict open; then it stays idle. Where the others
        replaced a folder whose content the archive keeps (it applies no delete), the
        folder stays and their item is a conflict copy beside it: the one conflict allowed,
        and that copy counts as holding the item."""
        self._sync_archive()
        status = run_cli("status", str(self.archive), "--json", "--offline").json
        held = tree(self.archive)
        kept = {
            rel
            for rel, item in agreed.items()
            if item[0] != "dir" and held.get(rel, ("",))[0] == "dir"
        }
        beside = {(o[0], item) for rel, item in held.items() if (o := parse_conflict_name(rel))}
        conflicts = {c["path"] for c in status["conflicts"]}
        assert conflicts <= kept, self._why(f"{ARCHIVE}: conflicts stay open: {status}")
        # The archive never applies a delete, so it may still hold an ignore file the others
        # deleted: what its own rules ignore, it neither downloads nor is expected to hold.
        rules = IgnoreRules.empty()
        if held.get(IGNORE_FILE, ("",))[0] == "file":
            rules = IgnoreRules.decode((self.archive / IGNORE_FILE).read_bytes())[0]
        missing = {
            rel: item
            for rel, item in agreed.items()
            if held.get(rel) != item
            and (rel not in kept or (rel, item) not in beside)
            and not rules.matches(rel, item[0] == "dir")
        }
        assert not missing, self._why(f"{ARCHIVE} lacks what the others agree on: {missing}")
        got = run_cli("sync", str(self.archive), "--json", "--check-full")
        settled = 4 if conflicts else 0
        assert got.code == settled, self._why(f"{ARCHIVE}: settled pass exited {got.code}")
        assert tree(self.archive) == held, self._why(f"{ARCHIVE}: idle pass changed the tree")

    def _status(self, device: str) -> dict[str, Any]:
        got = run_cli("status", str(self.roots[device]), "--json", "--offline")
        result: dict[str, Any] = got.json
        attention = result["conflicts"] or result["problems"] or result["halted"]
        assert got.code == (4 if attention else 0), got.err  # 4: something to settle
        return result

    def _why(self, message: str) -> str:
        trees = {d: sorted(tree(self.roots[d]).items()) for d in DEVICES}
        if self.seeded:
            trees[ARCHIVE] = sorted(tree(self.archive).items())
        lines = [message, "history:", *self.log[-80:], "trees:"]
        lines += [f"  {d}: {t}" for d, t in trees.items()]
        return "\n".join(lines)

    def _rounds(self) -> None:
        """Sync every device in turn until a whole round changes nothing on any disk."""
        for _ in range(MAX_ROUNDS):
            before = {d: tree(self.roots[d]) for d in DEVICES}
            published = [self._sync(d).get("snapshot") for d in DEVICES]
            if all(m is None for m in published) and before == {
                d: tree(self.roots[d]) for d in DEVICES
            }:
                return

    def _agreed_tree(self, device: str, skip: set[str]) -> dict[str, tuple[object, ...]]:
        """The tree but conflict copies and what is at or below the `skip` paths."""
        return {
            rel: item
            for rel, item in tree(self.roots[device]).items()
            if parse_conflict_name(rel) is None
            and not any(rel == s or rel.startswith(s + "/") for s in skip)
        }

    def _leftovers(self, device: str, unsynced: set[str]) -> set[str]:
        """Folders on `device` that hold something, all of it `unsynced` (special files,
        ignored paths): a folder deleted elsewhere stays for them, local-only."""
        items = tree(self.roots[device])
        found: set[str] = set()
        for rel in sorted((r for r, i in items.items() if i[0] == "dir"), reverse=True):
            below = [r for r in items if r.startswith(rel + "/")]
            if below and all(r in unsynced or r in found for r in below):
                found.add(rel)
        return found

    def _rules(self, device: str) -> IgnoreRules:
        if self._file(device, IGNORE_FILE) is None:
            return IgnoreRules.empty()
        return IgnoreRules.decode((self.roots[device] / IGNORE_FILE).read_bytes())[0]

    def _ignored_by(self, rules: IgnoreRules, device: str) -> dict[str, tuple[object, ...]]:
        """What `device` holds at the paths `rules` ignore."""
        items = tree(self.roots[device]).items()
        return {rel: item for rel, item in items if rules.matches(rel, item[0] == "dir")}

    def _ignored(self) -> set[str]:
        """Every path that some device's `.dropbearignore` ignores (local-only there)."""
        found: set[str] = set()
        for d in DEVICES:
            for other in DEVICES:
                found |= set(self._ignored_by(self._rules(d), other))
        return found

    def teardown(self) -> None:
        if not hasattr(self, "tmp"):
            return
        try:
            if self.ok:
                self._final_checks()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _final_checks(self) -> None:
        self._rounds()

        # 1. nothing lost
        held = set().union(*(self._held(d) for d in DEVICES))
        lost = self.published - self.superseded - held
        assert not lost, self._why(f"contents lost: {sorted(lost)}")

        # 2. the same tree everywhere, but for conflict copies, paths in conflict, paths
        # with a problem (a delete refused for naming other bytes, a type clash, a special
        # file in the way: the person decides, SPEC 4.1, 4.3), special files and ignored
        # paths
        skip = self._ignored()
        for d in DEVICES:
            status = self._status(d)
            skip |= {c["path"] for c in status["conflicts"]}
            skip |= {p["path"] for p in status["problems"]}
            for rel, item in tree(self.roots[d]).items():
                if (o := parse_conflict_name(rel)) is not None:
                    skip.add(o[0])
                if item[0] == "special":
                    skip.add(rel)
            skip |= self._leftovers(d, skip)
        first = self._agreed_tree(DEVICES[0], skip)
        for d in DEVICES[1:]:
            assert self._agreed_tree(d, skip) == first, self._why(
                f"{d} disagrees with {DEVICES[0]} outside the conflicts, problems, special"
                f" files and ignored paths {sorted(skip)}"
            )

        # 3. the people settle every conflict and problem; then all agree, exit 0, and
        # stay idle
        for _ in range(MAX_ROUNDS):
            # (a copy of a path that became ignored is the person's to delete too)
            copies = self._with_copies()
            open_on = [d for d in DEVICES if self._unsettled(d) or d in copies]
            if not open_on:
                break
            for d in open_on:
                self._settle(d)
                self._sync(d)
            self._rounds()
        for d in DEVICES:
            status = self._status(d)
            assert not self._unsettled(d), self._why(f"{d}: left unsettled: {status}")
        ignored = self._ignored()
        for d in DEVICES:
            ignored |= self._leftovers(d, ignored)
        first = self._agreed_tree(DEVICES[0], ignored)
        for d in DEVICES:
            now = tree(self.roots[d])
            assert not [r for r in now if parse_conflict_name(r)], self._why(f"{d}: copies left")
            assert self._agreed_tree(d, ignored) == first, self._why(
                f"{d} disagrees with {DEVICES[0]} after settling, ignored paths {sorted(ignored)}"
            )
        for d in DEVICES:
            before = tree(self.roots[d])
            got = run_cli("sync", str(self.roots[d]), "--json", "--check-full")
            assert got.code == 0, self._why(f"{d}: settled pass exited {got.code}: {got.out}")
            assert got.json["snapshot"] is None, self._why(f"{d}: idle pass published {got.out}")
            assert tree(self.roots[d]) == before, self._why(f"{d}: idle pass changed the tree")
        if self.seeded:
            self._check_archive(first)


ThreeRealDevices.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestThreeRealDevices = ThreeRealDevices.TestCase
