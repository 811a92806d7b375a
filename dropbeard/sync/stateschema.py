"""The schema of the local index `.dropbear/state.sqlite`: its tables, indexes and
triggers, its version, and the check that an index found on disk can be used (SQL text
and a version check; `dropbeard.sync.state` runs them); and `bulk_write`, which takes
the indexes and triggers of `files` down and up again around a write of most of it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dropbeard.core.errors import DropbeardError

SCHEMA_VERSION = 2
"""2: bucket format 2 (trees). An index of schema 1 (format 1, one manifest per publish)
is refused: its device's bucket objects are format 1, which this dropbeard does not read."""

#: The folder of a path, with its trailing '/' ('' at the top): what the `files_parent`
#: index orders by, so a scan reads the rows of one folder at a time
#: (`dropbeard.sync.folderrows`). Indexes made with IF NOT EXISTS need no migration: an
#: index of an earlier dropbeard gains it when next opened.
PARENT = "rtrim(path, replace(path, '/', ''))"

META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
#: The indexes on `files`, by name; `State.put_bases` drops and makes them again around a
#: write of most of the table (a first sync: one sort per index, not a B-tree insert per
#: row), in the same transaction.
FILES_INDEXES = {
    "files_blob": "CREATE INDEX IF NOT EXISTS files_blob ON files (blob) WHERE blob IS NOT NULL",
    "files_parent": f"CREATE INDEX IF NOT EXISTS files_parent ON files ({PARENT})",
    "files_status": (
        "CREATE INDEX IF NOT EXISTS files_status ON files (status, path) WHERE status != 'clean'"
    ),
}
#: The triggers on `files` that drop a folder's digest in `folder_stamps` when a row in
#: it is written (see below); by name, for the same reason.
FILES_TRIGGERS = {
    "folder_stamps_insert": """CREATE TRIGGER IF NOT EXISTS folder_stamps_insert
AFTER INSERT ON files BEGIN
    DELETE FROM folder_stamps WHERE parent = rtrim(NEW.path, replace(NEW.path, '/', ''));
END""",
    "folder_stamps_update": """CREATE TRIGGER IF NOT EXISTS folder_stamps_update
AFTER UPDATE ON files BEGIN
    DELETE FROM folder_stamps WHERE parent IN (
        rtrim(OLD.path, replace(OLD.path, '/', '')), rtrim(NEW.path, replace(NEW.path, '/', ''))
    );
END""",
    "folder_stamps_delete": """CREATE TRIGGER IF NOT EXISTS folder_stamps_delete
AFTER DELETE ON files BEGIN
    DELETE FROM folder_stamps WHERE parent = rtrim(OLD.path, replace(OLD.path, '/', ''));
END""",
}
_INDEXES = ";\n".join(FILES_INDEXES.values())
_TRIGGERS = ";\n".join(FILES_TRIGGERS.values())
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    path     TEXT PRIMARY KEY,
    size     INTEGER, mtime_ns INTEGER, inode INTEGER, ctime_ns INTEGER, sha256 TEXT,
    base     BLOB,
    chunks   BLOB,
    status   TEXT NOT NULL DEFAULT 'clean',
    blob     TEXT
) WITHOUT ROWID;
{_INDEXES};
CREATE TABLE IF NOT EXISTS held_chunks (
    path TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (path, sha256)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS held_chunks_sha256 ON held_chunks (sha256);
CREATE TABLE IF NOT EXISTS peers (
    device_id     TEXT PRIMARY KEY,
    head_etag     TEXT,
    snapshot      TEXT,
    tree          TEXT,
    tombstone_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS problems (
    path TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, PRIMARY KEY (path, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folder_stamps (parent TEXT PRIMARY KEY, stamps BLOB NOT NULL)
    WITHOUT ROWID;
{_TRIGGERS};
"""

#: `folder_stamps` holds, per folder (as PARENT names it), a digest of its listing as a
#: whole-root scan found it when every file in it was vouched for by its row
#: (`dropbeard.sync.folderrows.folder_stamps`): the next scan that finds the same digest
#: vouches for the folder without reading its rows. The triggers drop a folder's digest
#: whenever any row in it is written, by whatever path, so a digest never outlives the
#: rows it stands for. Tables and triggers made with IF NOT EXISTS need no migration.


#: Rows written at once from which `bulk_write` may rebuild the indexes of `files` rather
#: than update them row by row.
_BULK = 2000


@contextmanager
def bulk_write(db: sqlite3.Connection, paths: list[str]) -> Iterator[None]:
    """Around a write of the rows of `paths` in `db`'s current transaction: when they are
    most of `files` (a first sync, a second device's first download), its indexes and
    triggers are dropped and made again after it (one sort per index, not a B-tree insert
    per row and a trigger per row: 0.57 s -> 0.3 s for 20,800 rows), and the folder
    digests of their folders dropped, as the triggers would have. DDL is transactional in
    SQLite: a rollback, or a crash, leaves the schema as it was."""
    if (
        len(paths) < _BULK
        or not db.in_transaction  # each DDL statement would commit alone
        or 2 * len(paths) < db.execute("SELECT count(*) FROM files").fetchone()[0]
    ):
        yield
        return
    for name in FILES_TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    for name in FILES_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    yield
    for statement in (*FILES_INDEXES.values(), *FILES_TRIGGERS.values()):
        db.execute(statement)
    db.executemany(
        "DELETE FROM folder_stamps WHERE parent=?",
        ((parent,) for parent in {p[: p.rfind("/") + 1] for p in paths}),
    )


class StateError(DropbeardError):
    """state.sqlite is missing, corrupt, or from a newer dropbeard."""


def check_schema(path: Path, version: str | None) -> None:
    """StateError unless an index of schema `version` (None: a new one) can be used."""
    if version is None or int(version) == SCHEMA_VERSION:
        return
    if int(version) > SCHEMA_VERSION:
        raise StateError(
            f"opening {path}: written by a newer dropbeard (schema {version}, this "
            f"one knows {SCHEMA_VERSION}); upgrade dropbeard"
        )
    raise StateError(
        f"opening {path}: written by an earlier dropbeard for bucket format 1, which this "
        "one does not read; move that root's .dropbear/ folder away and run `dropbeard "
        "init` again, with a new remote (or --root-id) for the folder"
    )


__all__ = [
    "FILES_INDEXES",
    "FILES_TRIGGERS",
    "META",
    "PARENT",
    "SCHEMA",
    "SCHEMA_VERSION",
    "StateError",
    "bulk_write",
    "check_schema",
]
