"""The local index `.dropbear/state.sqlite` (dropbeard.sync.state): every table round-trips
and survives closing and reopening; transactions roll back; a missing, corrupt or newer
index is refused with a clear error."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from dropbeard.core.chunking import Chunk, MiB
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import Base, ConflictInfo
from dropbeard.core.problems import Problem
from dropbeard.sync.state import Peer, State, StatRow
from dropbeard.sync.stateschema import SCHEMA_VERSION, StateError

SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / ".dropbear" / "state.sqlite"


@pytest.fixture
def state(db: Path) -> Iterator[State]:
    db.parent.mkdir()
    opened = State.open(db, create=True)
    try:
        yield opened
    finally:
        opened.close()


def reopen(state: State) -> State:
    state.close()
    return State.open(state.path)


def base_bytes(base: Base) -> bytes:
    return msgspec.json.encode(base)


ENTRY = Entry(
    path="docs/a.txt",
    type="file",
    mode=0o644,
    version={"a": 3, "b": 1},
    size=5,
    mtime_ns=1_700_000_000_000_000_001,
    sha256=SHA_A,
)
CLEAN = Base(entry=ENTRY)
DELETED = Base(deleted=Delete(path="old.txt", type="file", version={"a": 4}, sha256=SHA_B))
CONFLICTED = Base(
    entry=ENTRY,
    conflict=ConflictInfo(
        version={"a": 3, "b": 2},
        copies=["docs/a.conflict-b-20260522T180500Z.txt"],
        local=ENTRY,
        since=datetime(2026, 5, 22, 18, 5, tzinfo=UTC),
    ),
)


def test_a_missing_index_is_refused_unless_created(db: Path) -> None:
    with pytest.raises(StateError, match=r"the local index is missing; run `dropbeard init`"):
        State.open(db)
    assert not db.exists()


def test_a_new_index_records_its_schema_version(state: State) -> None:
    assert state.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert state.stat_cache() == {} and state.bases() == {} and state.peers() == {}
    assert state.problems() == [] and state.statuses() == {}


def test_statement_journals_stay_in_memory(state: State) -> None:
    """Every row written to `files` fires a trigger, so SQLite journals each statement;
    past 64 KiB in one transaction it would spill those journals to a temp file and write
    every later row's pages there too (~15 writes per downloaded file)."""
    assert state._db.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY


def test_the_stat_cache_round_trips_and_survives_reopening(state: State) -> None:
    rows: list[tuple[str, StatRow]] = [
        ("a.txt", (5, 1_700_000_000_123_456_789, 4242, 1_700_000_000_987_654_321, SHA_A, None)),
        ("dir/ü b.bin", (2**40, -1, 2**62, 7, SHA_B, None)),  # huge size, pre-1970 mtime
    ]
    state.put_stats(rows)
    assert state.stat_cache() == dict(rows)

    state = reopen(state)
    assert state.stat_cache() == dict(rows)

    state.put_stats([("a.txt", (6, 1, 2, 3, SHA_B, None))])  # a later hash replaces the row
    assert state.stat_cache()["a.txt"] == (6, 1, 2, 3, SHA_B, None)
    assert len(state.stat_cache()) == 2
    state.close()


def test_a_large_files_chunk_list_is_kept_with_its_row(state: State) -> None:
    chunks = (Chunk(SHA_A, 10 * MiB), Chunk(SHA_B, 7 * MiB))
    state.put_stats([("big.bin", (17 * MiB, 1, 2, 3, SHA_A, chunks))])

    state = reopen(state)
    assert state.stat_cache() == {"big.bin": (17 * MiB, 1, 2, 3, SHA_A, chunks)}
    assert state.stat_cache_below(["big.bin"])["big.bin"][5] == chunks
    assert list(state.chunked_files()) == [("big.bin", chunks)]

    state.put_stats([("big.bin", (5, 1, 2, 4, SHA_B, None))])  # now a small file
    assert state.stat_cache()["big.bin"] == (5, 1, 2, 4, SHA_B, None)
    assert list(state.chunked_files()) == []
    state.close()


def test_bases_and_statuses_round_trip_and_survive_reopening(state: State) -> None:
    state.put_bases(
        [
            ("docs/a.txt", CLEAN),
            ("old.txt", DELETED),
            ("b.txt", CONFLICTED),
            ("c.txt", CONFLICTED),
        ]
    )

    state = reopen(state)
    decoded = {p: msgspec.json.decode(b, type=Base) for p, b in state.bases().items()}
    assert decoded == {
        "docs/a.txt": CLEAN,
        "old.txt": DELETED,
        "b.txt": CONFLICTED,
        "c.txt": CONFLICTED,
    }
    assert state.statuses() == {"clean": 1, "deleted": 1, "conflict": 2}
    assert state.paths_with_status("conflict") == ["b.txt", "c.txt"]
    assert state.paths_with_status("nothing") == []
    state.close()


def test_the_paths_of_a_status_are_read_from_an_index_of_the_rows_not_clean(
    state: State,
) -> None:
    """A pass asks for the open conflicts; a table scan of 100,000 clean rows cost 20 ms."""
    state.put_bases([(f"f{i}.txt", CLEAN) for i in range(50)] + [("b.txt", CONFLICTED)])
    plans: list[str] = []
    db = state._db
    db.set_trace_callback(plans.append)
    assert state.paths_with_status("conflict") == ["b.txt"]
    db.set_trace_callback(None)
    (query,) = plans
    plan = db.execute("EXPLAIN QUERY PLAN " + query).fetchall()
    assert "COVERING INDEX files_status" in str(plan)
    with pytest.raises(ValueError):
        state.paths_with_status("clean")


def test_stats_and_bases_of_one_path_do_not_overwrite_each_other(state: State) -> None:
    row: StatRow = (5, 10, 20, 30, SHA_A, None)
    state.put_stats([("a.txt", row)])
    state.put_bases([("a.txt", CONFLICTED)])
    state.put_stats([("a.txt", (6, 11, 21, 31, SHA_B, None))])

    assert state.bases() == {"a.txt": base_bytes(CONFLICTED)}
    assert state.statuses() == {"conflict": 1}
    assert state.stat_cache() == {"a.txt": (6, 11, 21, 31, SHA_B, None)}

    state.put_bases([("a.txt", DELETED)])
    assert state.stat_cache() == {"a.txt": (6, 11, 21, 31, SHA_B, None)}
    assert state.statuses() == {"deleted": 1}


def test_forgetting_a_path_drops_its_base_and_its_stats(state: State) -> None:
    state.put_stats(
        [("gone.txt", (1, 2, 3, 4, SHA_A, None)), ("kept.txt", (1, 2, 3, 4, SHA_B, None))]
    )
    state.put_bases([("gone.txt", CLEAN), ("kept.txt", CLEAN)])

    state.put_bases([("gone.txt", None)])

    assert set(state.bases()) == {"kept.txt"}
    assert set(state.stat_cache()) == {"kept.txt"}
    assert state.statuses() == {"clean": 1}


def test_forgetting_stats_keeps_bases_and_drops_rows_left_empty(state: State) -> None:
    state.put_stats(
        [("tracked.txt", (1, 2, 3, 4, SHA_A, None)), ("untracked.txt", (1, 2, 3, 4, SHA_B, None))]
    )
    state.put_bases([("tracked.txt", CLEAN)])

    state.forget_stats(["tracked.txt", "untracked.txt"])

    assert state.stat_cache() == {}
    assert state.bases() == {"tracked.txt": base_bytes(CLEAN)}
    assert state.statuses() == {"clean": 1}  # the untracked row is gone entirely


def test_peers_round_trip_are_replaced_and_survive_reopening(state: State) -> None:
    b = Peer("b", '"etag-1"', "20260522T180500Z", SHA_A, 3)
    c = Peer("c", None, None, None, 0)
    state.put_peer(b)
    state.put_peer(c)
    newer = Peer("b", '"etag-2"', "20260522T181000Z", SHA_B, 4)
    state.put_peer(newer)

    state = reopen(state)
    assert state.peers() == {"b": newer, "c": c}
    state.close()


def test_problems_are_replaced_as_a_whole_and_listed_in_order(state: State) -> None:
    state.replace_problems([Problem(path="old", kind="permission", message="was a problem")])
    state.replace_problems(
        [
            Problem(path="z.txt", kind="integrity", message="z: bad blob"),
            Problem(path="a.txt", kind="permission", message="a: denied"),
            Problem(path="a.txt", kind="invalid_name", message="a: bad name"),
            Problem(path="z.txt", kind="integrity", message="z: bad blob, again"),
        ]
    )

    state = reopen(state)
    assert state.problems() == [
        Problem(path="a.txt", kind="invalid_name", message="a: bad name"),
        Problem(path="a.txt", kind="permission", message="a: denied"),
        Problem(path="z.txt", kind="integrity", message="z: bad blob, again"),
    ]
    state.replace_problems([])
    assert state.problems() == []
    state.close()


def test_meta_values_and_counters(state: State) -> None:
    assert state.get_meta("last_snapshot") is None
    assert state.get_int("counter") == 0 and state.get_int("counter", 7) == 7
    state.set_meta("counter", "41")
    state.set_meta("counter", "42")
    state.set_meta("last_snapshot", "20260522T180500Z")

    state = reopen(state)
    assert state.get_int("counter") == 42
    assert state.get_meta("last_snapshot") == "20260522T180500Z"
    state.close()


def test_a_failed_transaction_leaves_nothing_behind(state: State) -> None:
    state.set_meta("counter", "1")
    state.put_bases([("a.txt", CLEAN)])

    with pytest.raises(RuntimeError, match="publish failed"), state.transaction():
        state.set_meta("counter", "2")
        state.put_bases([("a.txt", None), ("b.txt", CLEAN)])
        state.put_peer(Peer("b", "e", None, None, 0))
        raise RuntimeError("publish failed")

    state = reopen(state)
    assert state.get_int("counter") == 1
    assert set(state.bases()) == {"a.txt"}
    assert state.peers() == {}

    with state.transaction():
        state.set_meta("counter", "3")
    state = reopen(state)
    assert state.get_int("counter") == 3
    state.close()


def test_an_index_from_a_newer_dropbeard_is_refused(state: State) -> None:
    state.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    state.close()

    with pytest.raises(StateError, match=r"written by a newer dropbeard .*upgrade dropbeard"):
        State.open(state.path)


def test_a_corrupt_index_is_refused_not_recreated(db: Path) -> None:
    db.parent.mkdir()
    db.write_bytes(b"this is not a sqlite database, just junk " * 100)

    with pytest.raises(StateError, match="the local index is unreadable"):
        State.open(db, create=True)
    assert db.read_bytes().startswith(b"this is not a sqlite database")


def test_writes_are_visible_to_another_connection(state: State) -> None:
    """WAL: `dropbeard status` reads the index while a daemon holds it open."""
    state.put_bases([("a.txt", CLEAN)])
    state.set_meta("counter", "5")

    other = sqlite3.connect(state.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT value FROM meta WHERE key='counter'").fetchone() == ("5",)
        assert other.execute("SELECT path, status FROM files").fetchall() == [("a.txt", "clean")]
    finally:
        other.close()


def test_reserved_ids_only_ever_grow_and_survive_reopening(state: State) -> None:
    state.reserve(12, 3, "20260522T180500Z")
    state.reserve(7, 2, "20260101T000000Z")  # lower: changes nothing
    state.reserve(12, 5, "20260522T180501Z")
    state = reopen(state)

    assert state.get_int("reserved_counter") == 12
    assert state.get_int("reserved_seq") == 5
    assert state.get_meta("reserved_snapshot") == "20260522T180501Z"
    state.close()


# -- reading by path (what a pass over what changed reads) ------------------------------

FOLDER_AND_NEIGHBOURS = ["c", "d", "d.txt", "d/x", "d/y/z", "d0", "dd", "d\u00e9"]


def test_bases_are_read_by_path_and_below_a_folder(state: State) -> None:
    """A pass reads the bases of its paths by key and those below a folder by one range:
    exactly the folder's subtree, not its namesakes (`d.txt`, `d0`, `dd`, `dé`)."""
    state.put_bases((p, CLEAN) for p in FOLDER_AND_NEIGHBOURS)
    assert set(state.bases_of(["d", "d/x", "nothing"])) == {"d", "d/x"}
    assert set(state.bases_of(f"p{i}" for i in range(1200))) == set()  # batched queries
    assert [p for p, _ in state.bases_below("d")] == ["d/x", "d/y/z"]
    assert [p for p, _ in state.bases_below("d/y")] == ["d/y/z"]
    assert [p for p, _ in state.bases_below("")] == sorted(FOLDER_AND_NEIGHBOURS)
    assert [p for p, _ in state.each_base()] == sorted(FOLDER_AND_NEIGHBOURS)


def test_stat_rows_are_read_for_some_paths_and_below_them(state: State) -> None:
    row: StatRow = (5, 1, 2, 3, SHA_A, None)
    state.put_stats((p, row) for p in FOLDER_AND_NEIGHBOURS)
    assert set(state.stat_cache_below(["d", "c"])) == {"c", "d", "d/x", "d/y/z"}


def test_what_a_pass_left_open_is_unknown_until_one_records_it(state: State) -> None:
    """Pending paths: None (reconcile every path) for a new index, or once forgotten."""
    assert state.pending() is None
    state.replace_pending(["a.txt", "d/b.txt"])
    state = reopen(state)
    assert state.pending() == {"a.txt", "d/b.txt"}
    state.replace_pending([])
    assert state.pending() == set()
    state.replace_pending(None)
    assert state.pending() is None


def test_holds_blob_knows_the_files_this_device_lists_and_no_others(state: State) -> None:
    """A blob an agreed path of this device's listing references is in the bucket; one of
    a path in conflict, deleted or forgotten may not be."""
    other = msgspec.structs.replace(ENTRY, path="b.txt", sha256=SHA_B)
    state.put_bases(
        [("docs/a.txt", CLEAN), ("b.txt", Base(entry=other, conflict=CONFLICTED.conflict))]
    )
    assert state.holds_blob(SHA_A) and not state.holds_blob(SHA_B)
    state.put_bases([("docs/a.txt", None)])
    assert not state.holds_blob(SHA_A)
    state.put_bases(
        [("docs/a.txt", CLEAN), ("x.txt", Base(entry=msgspec.structs.replace(ENTRY, path="x.txt")))]
    )
    state.put_bases([("docs/a.txt", DELETED)])
    assert state.holds_blob(SHA_A)  # x.txt still lists those bytes
    state.put_bases([("x.txt", DELETED)])
    assert not state.holds_blob(SHA_A)


def test_holds_blob_knows_the_chunks_of_a_listed_file_not_its_whole_blob(state: State) -> None:
    """A file stored in chunks is in the bucket as its chunks (SPEC 1.6): those count as
    held, its whole-file digest does not; the chunks stop counting when the path's
    listing changes or goes."""
    sha_c, sha_d = "c" * 64, "d" * 64
    chunked = msgspec.structs.replace(
        ENTRY, path="big.bin", size=17 * MiB, chunks=[Chunk(SHA_B, 10 * MiB), Chunk(sha_c, 7 * MiB)]
    )
    state.put_bases([("big.bin", Base(entry=chunked))])
    assert state.holds_blob(SHA_B) and state.holds_blob(sha_c)
    assert not state.holds_blob(SHA_A)  # the file's own digest: no such blob was written
    state = reopen(state)
    assert state.holds_blob(sha_c)

    edited = msgspec.structs.replace(
        chunked, chunks=[Chunk(SHA_B, 10 * MiB), Chunk(sha_d, 7 * MiB)]
    )
    state.put_bases([("big.bin", Base(entry=edited))])
    assert state.holds_blob(sha_d) and not state.holds_blob(sha_c)
    state.put_bases([("big.bin", DELETED)])
    assert not state.holds_blob(SHA_B) and not state.holds_blob(sha_d)
    state.put_bases([("big.bin", Base(entry=edited))])
    state.put_bases([("big.bin", None)])
    assert not state.holds_blob(SHA_B)
    state.close()


def test_an_index_of_format_1_is_refused_with_what_to_do(db: Path) -> None:
    """Schema 1 indexes belong to bucket format 1, which this dropbeard does not read."""
    db.parent.mkdir()
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    old.execute("CREATE TABLE peers (device_id TEXT PRIMARY KEY, manifest_id TEXT)")
    old.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    old.commit()
    old.close()
    with pytest.raises(StateError) as refused:
        State.open(db)
    message = str(refused.value)
    assert "bucket format 1" in message and "dropbeard init" in message and "\n" not in message


def test_a_base_and_its_stat_row_written_together_are_the_rows_written_apart(
    tmp_path: Path,
) -> None:
    """`put_bases` with stat rows writes each path once: the same rows as writing the
    bases, then the stat rows; the stat rows of paths without a new base stay for
    `put_stats`."""
    chunks = (Chunk(SHA_A, 10 * MiB), Chunk(SHA_B, 7 * MiB))
    bases = [("docs/a.txt", CLEAN), ("old.txt", DELETED), ("b.txt", CONFLICTED)]
    stats: list[tuple[str, StatRow]] = [
        ("docs/a.txt", (5, 1, 2, 3, SHA_A, None)),
        ("b.txt", (17 * MiB, 4, 5, 6, SHA_B, chunks)),
        ("only-stat.txt", (7, 8, 9, 10, SHA_A, None)),
    ]
    found = []
    for together in (False, True):
        db = tmp_path / f"{together}" / "state.sqlite"
        db.parent.mkdir()
        state = State.open(db, create=True)
        state.put_stats([("docs/a.txt", (1, 1, 1, 1, SHA_B, None))])  # an older row
        if together:
            left = dict(stats)
            state.put_bases(bases, left)
            assert left == {"only-stat.txt": (7, 8, 9, 10, SHA_A, None)}
            state.put_stats(left.items())
        else:
            state.put_bases(bases)
            state.put_stats(stats)
        found.append(
            (
                state.stat_cache(),
                state.bases(),
                state.statuses(),
                list(state.chunked_files()),
                state.holds_blob(SHA_A),
            )
        )
        state.close()
    assert found[0] == found[1]
    assert found[1][0]["b.txt"] == (17 * MiB, 4, 5, 6, SHA_B, chunks)


def _dump(state: State) -> tuple[object, ...]:
    db = state._db
    return (
        db.execute("SELECT * FROM files ORDER BY path").fetchall(),
        db.execute("SELECT * FROM held_chunks ORDER BY path, sha256").fetchall(),
        db.execute("SELECT * FROM folder_stamps ORDER BY parent").fetchall(),
        db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
    )


def test_a_write_of_most_rows_rebuilds_the_indexes_to_the_same_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first sync's commit writes every row: `put_bases` drops the indexes and triggers
    of `files` and makes them again after, and drops the folder digests of the folders it
    wrote to, as the triggers would. The index it leaves is the one row-by-row writes
    leave, and the triggers work after it."""
    chunks = (Chunk(SHA_A, 10 * MiB), Chunk(SHA_B, 7 * MiB))
    many = [(f"d{i % 7}/f{i}.txt", [CLEAN, CONFLICTED, DELETED][i % 3]) for i in range(2400)]
    stats = {f"d{i % 7}/f{i}.txt": (i, 1, 2, 3, SHA_A, None) for i in range(0, 2400, 2)}
    stats["d1/f1.txt"] = (17 * MiB, 4, 5, 6, SHA_B, chunks)
    found = []
    for bulk in (False, True):
        monkeypatch.setattr("dropbeard.sync.stateschema._BULK", 2000 if bulk else 10**9)
        db = tmp_path / f"{bulk}" / "state.sqlite"
        db.parent.mkdir()
        state = State.open(db, create=True)
        state.put_bases([("d1/f1.txt", CLEAN), ("gone/x.txt", CLEAN), ("other/y.txt", CLEAN)])
        state.set_folder_stamps(
            {"d1/": b"1", "d2/": b"2", "gone/": b"3", "other/": b"4"}, lambda: True
        )
        statements: list[str] = []
        state._db.set_trace_callback(statements.append)
        with state.transaction():
            state.put_bases([*many, ("gone/x.txt", None)], dict(stats))
        state._db.set_trace_callback(None)
        dropped = [s for s in statements if s.startswith("DROP INDEX")]
        assert any("files_parent" in s for s in dropped) == bulk
        found.append(_dump(state))
        state.put_bases([("other/z.txt", CLEAN)])  # the trigger is back
        assert state._db.execute("SELECT parent FROM folder_stamps").fetchall() == []
        state.close()
    assert found[0] == found[1]
    assert found[1][2] == [("other/", b"4")]  # the digest of a folder not written to stays


class _FailingInserts:
    """A real connection whose inserts into `files` fail (a full disk, say)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)

    def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
        if sql.startswith("INSERT INTO files"):
            names = self.db.execute("SELECT name FROM sqlite_master").fetchall()
            assert ("files_parent",) not in names  # dropped for the write
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.executemany(sql, rows)  # type: ignore[arg-type]


def test_a_rebuild_of_the_indexes_that_fails_leaves_the_schema_as_it_was(
    state: State,
) -> None:
    state.put_bases([("a.txt", CLEAN)])
    before = _dump(state)
    real = state._db
    state._db = _FailingInserts(real)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="disk is full"), state.transaction():
        state.put_bases([(f"f{i}.txt", CLEAN) for i in range(2500)])
    state._db = real
    assert _dump(reopen(state)) == before
