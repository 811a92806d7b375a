"""The local index `.dropbear/state.sqlite` (WAL): stat cache (with a large file's chunk
list), base versions, statuses, counters, this device's last published tree (and the
blobs and chunks it references), other devices' progress (their processed snapshot and
tree), problems (IO: sqlite).

Methods are synchronous and short; async callers run them in a worker thread (the engine
owns one `State` per root and never uses it from two threads at once). Writes that
describe bucket changes are committed only after those bucket writes succeeded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.passrules import base_status
from dropbeard.core.plan import Base, publishable
from dropbeard.core.problems import Problem
from dropbeard.sync.stateschema import (
    META,
    SCHEMA,
    SCHEMA_VERSION,
    StateError,
    bulk_write,
    check_schema,
)

#: Paths per `IN (...)` query (SQLite allows 999 parameters in older builds).
_BATCH = 500

#: size, mtime_ns, inode, ctime_ns, sha256 and, for a file stored in chunks, its chunk list
StatRow = tuple[int, int, int, int, str, tuple[Chunk, ...] | None]
_STAT_COLUMNS = "size, mtime_ns, inode, ctime_ns, sha256, chunks"
_CHUNKS = msgspec.json.Decoder(tuple[Chunk, ...])


class Peer(msgspec.Struct, frozen=True):
    """How far this device processed another one: the head (etag) it read last, that
    head's snapshot id and root tree (None: it publishes nothing) and tombstone seq."""

    device_id: str
    head_etag: str | None
    snapshot: str | None
    tree: str | None
    tombstone_seq: int


class State:
    """One root's index. Open with `State.open(path)`; `create=True` only for `init`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> State:
        if not create and not path.exists():
            raise StateError(f"opening {path}: the local index is missing; run `dropbeard init`")
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            # A write to `files` fires a trigger, so every row written is a statement that
            # may need undoing alone: SQLite keeps its statement journal in memory up to
            # 64 KiB, then in a temp file for the rest of the transaction (a commit of
            # 20,000 downloaded files wrote ~15 pages per row to /var/tmp). In memory.
            db.execute("PRAGMA temp_store=MEMORY")
            db.execute(META)
            state = cls(db, path)
            version = state.get_meta("schema_version")
            check_schema(path, version)
            db.executescript(SCHEMA)
            if version is None:
                state.set_meta("schema_version", str(SCHEMA_VERSION))
            return state
        except sqlite3.DatabaseError as exc:
            raise StateError(f"opening {path}: the local index is unreadable ({exc})") from exc

    def close(self) -> None:
        self._db.close()

    # -- meta -----------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self._db.execute("DELETE FROM meta WHERE key=?", (key,))

    def get_int(self, key: str, default: int = 0) -> int:
        value = self.get_meta(key)
        return default if value is None else int(value)

    def reserve(self, counter: int, tombstone_seq: int, snapshot: str | None) -> None:
        """Record the ids a publish is about to use, before it writes anything that uses
        them (SPEC 4 step 1): each meta `reserved_*` only ever grows, and a pass never
        uses an id at or below it again, even if it crashed before its commit."""
        with self.transaction():
            for key, value in (("reserved_counter", counter), ("reserved_seq", tombstone_seq)):
                if value > self.get_int(key):
                    self.set_meta(key, str(value))
            if snapshot is not None and snapshot > (self.get_meta("reserved_snapshot") or ""):
                self.set_meta("reserved_snapshot", snapshot)

    # -- files ----------------------------------------------------------------------

    def stat_cache(self) -> dict[str, StatRow]:
        """path -> (size, mtime_ns, inode, ctime_ns, sha256, chunks) for every hashed file."""
        rows = self._db.execute(f"SELECT path, {_STAT_COLUMNS} FROM files WHERE sha256 IS NOT NULL")
        # O(files) on a full rescan: a chunk list is decoded only where there is one
        return {r[0]: (*r[1:6], None) if r[6] is None else _stat_row(r) for r in rows}

    def chunked_files(self) -> Iterator[tuple[str, tuple[Chunk, ...]]]:
        """(path, chunk list) of every file the stat cache knows to hold chunks (as it was
        when last hashed: a reader verifies a chunk's bytes before it uses them)."""
        rows = self._db.execute("SELECT path, chunks FROM files WHERE chunks IS NOT NULL")
        for path, chunks in rows:
            if (decoded := _decode_chunks(chunks)) is not None:
                yield str(path), decoded

    def bases(self) -> dict[str, bytes]:
        """path -> encoded base record (the engine decodes it), for every path: O(files),
        for what must see them all (`status`, a full reconcile)."""
        return dict(self.each_base())

    def each_base(self) -> Iterator[tuple[str, bytes]]:
        """Every (path, encoded base), one row at a time, in path order."""
        rows = "SELECT path, base FROM files WHERE base IS NOT NULL ORDER BY path"
        for path, base in self._db.execute(rows):
            yield path, bytes(base)

    def bases_of(self, paths: Iterable[str]) -> dict[str, bytes]:
        """path -> encoded base of those of `paths` that have one (by primary key)."""
        wanted = list(paths)
        found: dict[str, bytes] = {}
        for i in range(0, len(wanted), _BATCH):
            chunk = wanted[i : i + _BATCH]
            rows = self._db.execute(
                "SELECT path, base FROM files WHERE base IS NOT NULL AND path IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((r[0], bytes(r[1])) for r in rows)
        return found

    def bases_below(self, folder: str) -> list[tuple[str, bytes]]:
        """(path, encoded base) of every path below `folder` ('' for the root), in path
        order: one range scan of the primary key."""
        if not folder:
            return list(self.each_base())
        rows = self._db.execute(
            "SELECT path, base FROM files WHERE path > ? AND path < ? AND base IS NOT NULL "
            "ORDER BY path",
            _below(folder),
        )
        return [(r[0], bytes(r[1])) for r in rows]

    def stat_cache_below(self, paths: Iterable[str]) -> dict[str, StatRow]:
        """The stat-cache rows of `paths` and of everything below them."""
        found: dict[str, StatRow] = {}
        query = (
            f"SELECT path, {_STAT_COLUMNS} FROM files "
            "WHERE sha256 IS NOT NULL AND (path = ? OR (path > ? AND path < ?))"
        )
        for path in paths:
            rows = self._db.execute(query, (path, *_below(path)))
            found.update((r[0], _stat_row(r)) for r in rows)
        return found

    def tracks_anything(self) -> bool:
        """True if any path has a base (a pass committed something)."""
        return (
            self._db.execute("SELECT 1 FROM files WHERE base IS NOT NULL LIMIT 1").fetchone()
            is not None
        )

    def clean_files_holding(self, shas: Iterable[str]) -> list[tuple[str, StatRow]]:
        """(path, stat-cache row) of the agreed files whose stat cache says they hold one
        of the blobs `shas` as published (not stored in chunks)."""
        wanted = list(shas)
        found: list[tuple[str, StatRow]] = []
        for i in range(0, len(wanted), _BATCH):
            chunk = wanted[i : i + _BATCH]
            rows = self._db.execute(
                f"SELECT path, {_STAT_COLUMNS} FROM files WHERE blob IN "
                f"({','.join('?' * len(chunk))}) AND sha256 = blob AND status = 'clean'",
                chunk,
            )
            found.extend((r[0], _stat_row(r)) for r in rows)
        return found

    def statuses(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, count(*) FROM files GROUP BY status")
        return {str(r[0]): int(r[1]) for r in rows}

    def paths_with_status(self, status: str) -> list[str]:
        """The paths of `status` (not 'clean'), in order: read from the `files_status`
        index, which holds no clean row (a pass asks for the open conflicts of a root
        whose rows are nearly all clean)."""
        if status == "clean":
            raise ValueError("paths_with_status reads the rows that are not clean")
        rows = self._db.execute(
            "SELECT path FROM files WHERE status = ? AND status != 'clean' ORDER BY path",
            (status,),
        )
        return [str(r[0]) for r in rows]

    def put_stats(self, rows: Iterable[tuple[str, StatRow]]) -> None:
        """Record stat-cache rows (keeps each path's base and status)."""
        self._db.executemany(
            f"INSERT INTO files (path, {_STAT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, inode=excluded.inode, ctime_ns=excluded.ctime_ns, "
            "sha256=excluded.sha256, chunks=excluded.chunks",
            ((p, *row[:5], _encode_chunks(row[5])) for p, row in rows),
        )

    def put_bases(
        self,
        rows: Iterable[tuple[str, Base | None]],
        stats: dict[str, StatRow] | None = None,
    ) -> None:
        """Set (path, base, or None to forget the path): its status follows from the base
        (`core.passrules.base_status`), and the blob of the file it publishes (or, for a
        file stored in chunks, its chunks: SPEC 1.6) is recorded for `holds_blob`. A path
        kept whose stat-cache row is in `stats` gets it in the same write (taken out of
        `stats`): each row written once, not once for its base and again for its stat
        row (`put_stats`), which halves what a first sync's commit costs."""
        written: list[str] = []
        forget: list[str] = []
        keep: list[tuple[str, bytes, str, str | None]] = []
        keep_with_stat: list[tuple[object, ...]] = []
        chunks: list[tuple[str, str]] = []
        for path, base in rows:
            written.append(path)
            if base is None:
                forget.append(path)
                continue
            listed = publishable(base)
            blob = None if listed is None or listed.chunks is not None else listed.sha256
            if listed is not None and listed.chunks is not None:
                chunks.extend((path, c.sha256) for c in listed.chunks)
            row = (path, _BASE_ENCODER.encode(base), base_status(base), blob)
            stat = None if stats is None else stats.pop(path, None)
            if stat is None:
                keep.append(row)
            else:
                keep_with_stat.append((*row, *stat[:5], _encode_chunks(stat[5])))
        keep.sort()  # in key order: each insert lands next to the last
        keep_with_stat.sort(key=lambda row: str(row[0]))
        with bulk_write(self._db, written):
            self._db.executemany("DELETE FROM files WHERE path=?", ((p,) for p in forget))
            if self._db.execute("SELECT 1 FROM held_chunks LIMIT 1").fetchone() is not None:
                cleared = ((p,) for p in written)
                self._db.executemany("DELETE FROM held_chunks WHERE path=?", cleared)
            self._db.executemany(
                "INSERT INTO files (path, base, status, blob) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET base=excluded.base, status=excluded.status, "
                "blob=excluded.blob",
                keep,
            )
            self._db.executemany(
                f"INSERT INTO files (path, base, status, blob, {_STAT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                "base=excluded.base, status=excluded.status, blob=excluded.blob, "
                "size=excluded.size, mtime_ns=excluded.mtime_ns, inode=excluded.inode, "
                "ctime_ns=excluded.ctime_ns, sha256=excluded.sha256, chunks=excluded.chunks",
                keep_with_stat,
            )
        self._db.executemany("INSERT OR IGNORE INTO held_chunks VALUES (?, ?)", chunks)

    def holds_blob(self, sha256: str) -> bool:
        """True if an agreed path of this device's listing is a file of these bytes, or a
        file stored in chunks one of which has them: the blob is in the bucket, reached by
        this device's current head (SPEC 8.2)."""
        row = self._db.execute(
            "SELECT 1 FROM files WHERE blob=? UNION ALL SELECT 1 FROM held_chunks WHERE sha256=? "
            "LIMIT 1",
            (sha256, sha256),
        ).fetchone()
        return row is not None

    def forget_stats(self, paths: Iterable[str]) -> None:
        self._db.executemany(
            "UPDATE files SET sha256=NULL, size=NULL, mtime_ns=NULL, inode=NULL, ctime_ns=NULL, "
            "chunks=NULL WHERE path=?",
            ((p,) for p in paths),
        )
        self._db.execute("DELETE FROM files WHERE base IS NULL AND sha256 IS NULL")

    # -- peers ----------------------------------------------------------------------

    def peers(self) -> dict[str, Peer]:
        rows = self._db.execute(
            "SELECT device_id, head_etag, snapshot, tree, tombstone_seq FROM peers"
        )
        return {r[0]: Peer(*r) for r in rows}

    def put_peer(self, peer: Peer) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO peers VALUES (?, ?, ?, ?, ?)",
            (peer.device_id, peer.head_etag, peer.snapshot, peer.tree, peer.tombstone_seq),
        )

    # -- pending --------------------------------------------------------------------

    def pending(self) -> set[str] | None:
        """The paths the last pass left open, which the next pass reconciles whatever
        changed; None if no pass recorded them (a new or older index, or state taken back
        from the bucket): then the next pass reconciles every path."""
        if self.get_meta("pending_kept") is None:
            return None
        return {str(r[0]) for r in self._db.execute("SELECT path FROM pending")}

    def replace_pending(self, paths: Iterable[str] | None) -> None:
        """Record the paths left open (None: forget them, so the next pass reconciles
        every path)."""
        self._db.execute("DELETE FROM pending")
        if paths is None:
            self.delete_meta("pending_kept")
            return
        self._db.executemany("INSERT OR IGNORE INTO pending VALUES (?)", ((p,) for p in paths))
        self.set_meta("pending_kept", "1")

    # -- problems -------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        rows = self._db.execute("SELECT path, kind, message FROM problems ORDER BY path, kind")
        return [Problem(path=r[0], kind=r[1], message=r[2]) for r in rows]

    def replace_problems(self, problems: Iterable[Problem]) -> None:
        self._db.execute("DELETE FROM problems")
        self._db.executemany(
            "INSERT OR REPLACE INTO problems VALUES (?, ?, ?)",
            ((p.path, p.kind, p.message) for p in problems),
        )

    # -- transactions ---------------------------------------------------------------

    def set_folder_stamps(self, stamps: dict[str, bytes], valid: Callable[[], bool]) -> bool:
        """Record the digests `stamps` (folder -> digest) if `valid()` still holds once
        this connection holds the write lock (no row was written since the scan read
        them: `FolderRows.unwritten`); False if it did not."""
        with self.transaction():
            if not valid():
                return False
            self._db.executemany(
                "INSERT OR REPLACE INTO folder_stamps VALUES (?, ?)", stamps.items()
            )
        return True

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """`with state.transaction():` groups writes; rolled back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


_BASE_ENCODER = msgspec.json.Encoder()


def _stat_row(r: tuple[object, ...]) -> StatRow:
    """A stat-cache row from (path, *_STAT_COLUMNS)."""
    return (r[1], r[2], r[3], r[4], r[5], _decode_chunks(r[6]))  # type: ignore[return-value]


def _encode_chunks(chunks: tuple[Chunk, ...] | None) -> bytes | None:
    return None if chunks is None else msgspec.json.encode(chunks)


def _decode_chunks(data: object) -> tuple[Chunk, ...] | None:
    """A stored chunk list, or None if there is none or it does not decode (the file is
    then read again, as if never hashed)."""
    if not isinstance(data, bytes):
        return None
    try:
        return _CHUNKS.decode(data)
    except msgspec.DecodeError:
        return None


def _below(folder: str) -> tuple[str, str]:
    """The bounds (exclusive) of the paths below the folder `folder` (not the root):
    '/' sorts just before '0', in UTF-8 bytes as in code points."""
    return folder + "/", folder + "0"
