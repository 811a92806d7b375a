"""What one pass costs against the size of the folder. Prints numbers; asserts nothing.

  .venv/bin/python bench/bench_pass.py [--files 20000]

Two devices of one local-directory remote, A holding N small files (100 per folder) and B a
synced copy. Then, in this process, each step one `run_pass` with the engine's own options:

- A, a daemon pass after a watcher event for one edited file (`only={path}`);
- B, a daemon pass after A's head changed (what the daemon runs then: `only=set()`, no
  local path to rescan);
- A, an idle full pass (the one-shot `sync`, and the daemon's periodic rescan).

For each: CPU seconds of the process (`time.process_time`, every thread), and the rows the
pass read from state.sqlite: base rows (the `base` column) and stat-cache rows, counted
by a wrapper around the connection's cursors.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropbeard.core.config import RemoteConfig, RootConfig
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.enroll import InitRequest, init_root
from dropbeard.sync.root import RootPaths, open_online

ROOT_ID = "bench"


class _Rows:
    """A cursor that counts the rows read from it, by the kind of query."""

    def __init__(self, cursor: sqlite3.Cursor, kind: str | None, counts: Counter[str]) -> None:
        self._cursor, self._kind, self._counts = cursor, kind, counts

    def __iter__(self) -> Iterator[Any]:
        for row in self._cursor:
            self._count(1)
            yield row

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        self._count(row is not None)
        return row

    def fetchall(self) -> list[Any]:
        rows = self._cursor.fetchall()
        self._count(len(rows))
        return rows

    def _count(self, n: int) -> None:
        if self._kind is not None:
            self._counts[self._kind] += n


class _CountingDb:
    """A sqlite3 connection whose SELECTs of bases and stat-cache rows are counted."""

    def __init__(self, db: sqlite3.Connection, counts: Counter[str]) -> None:
        self._db, self.counts = db, counts

    def execute(self, sql: str, *args: Any) -> Any:
        cursor = self._db.execute(sql, *args)
        if not sql.lstrip().upper().startswith("SELECT"):
            return cursor
        head = sql.split("FROM")[0]
        kind = "base rows" if "base" in head else "stat rows" if "sha256" in head else None
        return _Rows(cursor, kind, self.counts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"t{i // 10000:02d}" / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.txt").write_bytes(b"file %d\n" % i)


async def init(folder: Path, remote: Path, device: str) -> RootPaths:
    cfg = RootConfig(root_id=ROOT_ID, device_id=device, remote=RemoteConfig(url=str(remote)))
    req = InitRequest(path=folder, remote=cfg.remote, root_id=ROOT_ID, device_id=device)
    store = LocalStore(remote)
    try:
        return (await init_root(req, cfg, store)).paths
    finally:
        await store.aclose()


async def one_pass(
    paths: RootPaths, remote: Path, only: frozenset[str] | None = None
) -> tuple[float, Counter[str]]:
    cfg, state = open_online(paths)
    counts: Counter[str] = Counter()
    state._db = _CountingDb(state._db, counts)  # type: ignore[assignment]
    store = LocalStore(remote)
    began = time.process_time()
    try:
        await run_pass(paths, cfg, state, store, PassOptions(only=only))
    finally:
        spent = time.process_time() - began
        state.close()
        await store.aclose()
    return spent, counts


def show(what: str, spent: float, counts: Counter[str]) -> None:
    rows = ", ".join(f"{counts[k]} {k}" for k in ("base rows", "stat rows"))
    print(f"{what:<44} CPU {spent:6.3f} s   read {rows}")


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="dropbeard-bench-pass-"))
    try:
        remote = work / "remote"
        remote.mkdir()
        a_root, b_root = work / "a", work / "b"
        make_tree(a_root, args.files)
        a = await init(a_root, remote, "a")
        b = await init(b_root, remote, "b")
        show("A first sync", *await one_pass(a, remote))
        show("B first sync", *await one_pass(b, remote))
        show("A idle full pass (before any edit)", *await one_pass(a, remote))
        edited = "t00/d0001/f000100.txt"
        (a_root / edited).write_bytes(b"edited\n")
        show("A daemon pass: watcher saw one edit", *await one_pass(a, remote, frozenset({edited})))
        show("B daemon pass: A's head changed", *await one_pass(b, remote, frozenset()))
        assert (b_root / edited).read_bytes() == b"edited\n", "B did not take the edit"
        show("A idle full pass", *await one_pass(a, remote))
        print(f"{args.files} files")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    anyio.run(main, parser.parse_args())
