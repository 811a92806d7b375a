"""docs/read_bucket.py, the standalone format-2 reader: run as a person would run it, it
rebuilds a folder byte for byte from a local-directory remote and from SeaweedFS, and
refuses corrupt, foreign-format and hostile buckets with one line, writing nothing outside
DEST.

The buckets come from `build_bucket`: `dropbeard init` + `dropbeard sync` of the folder, run
as commands, so every rebuild reads a real dropbeard bucket. The refusals plant damaged or
hostile objects with the independent writer of tests/format2.py (which also writes chunk
lists of its own cutting)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.converge import tree
from tests.format2 import File, Folder, Link, Put, Writer, describe, sharded
from tests.seaweed import Seaweed

READER = Path(__file__).resolve().parents[1] / "docs" / "read_bucket.py"
MIB = 1 << 20


@dataclass
class Remote:
    """Where a bucket lives: the reader's SOURCE and options, its environment, raw access
    to the objects (keys relative to the remote's base), and what `dropbeard init` needs
    besides the SOURCE (its options; credentials in `env`)."""

    source: str
    args: list[str]
    env: dict[str, str]
    put: Put
    get: Callable[[str], bytes]
    init_args: list[str] = field(default_factory=list)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DROPBEAR_"))}
    return env | extra


def local_remote(base: Path) -> Remote:
    def put(key: str, data: bytes) -> None:
        (base / key).parent.mkdir(parents=True, exist_ok=True)
        (base / key).write_bytes(data)

    return Remote(str(base), [], clean_env(), put, lambda key: (base / key).read_bytes())


def s3_remote(server: Seaweed, tmp_path: Path) -> Remote:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    prefix = f"reader-{uuid.uuid4().hex[:12]}"
    env = clean_env(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        DROPBEAR_S3_ACCESS_KEY_ID=server.access_key,
        DROPBEAR_S3_SECRET_ACCESS_KEY=server.secret_key,
    )

    def put(key: str, data: bytes) -> None:
        s3.put_object(Bucket=server.bucket, Key=f"{prefix}/{key}", Body=data)

    def get(key: str) -> bytes:
        body: bytes = s3.get_object(Bucket=server.bucket, Key=f"{prefix}/{key}")["Body"].read()
        return body

    source = f"s3://{server.bucket}/{prefix}"
    init = ["--endpoint-url", server.endpoint, "--addressing-style", "path"]
    return Remote(source, ["--endpoint-url", server.endpoint], env, put, get, init)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    if request.param == "s3":
        return s3_remote(request.getfixturevalue("seaweed"), tmp_path)
    return local_remote(tmp_path / "remote")


def dropbeard(remote: Remote, *args: str) -> str:
    """Run `dropbeard ARGS` as a command, with the remote's environment; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "dropbeard", *args],
        env={**remote.env, "XDG_CONFIG_HOME": remote.env.get("HOME", "/nonexistent")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def build_bucket(remote: Remote, source: Path) -> str:
    """Publish the folder `source` as device `laptop` of root `r1`, with dropbeard (the
    first time, `init` makes it a root); the snapshot it published."""
    if not (source / ".dropbear").exists():
        init = ["init", str(source), "--remote", remote.source, *remote.init_args]
        dropbeard(remote, *init, "--root-id", "r1", "--device-id", "laptop", "-q")
    snapshot: str = json.loads(dropbeard(remote, "sync", str(source), "--json"))["snapshot"]
    return snapshot


def read_bucket(remote: Remote, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(READER), remote.source, "r1", "laptop", str(dest)]
    return subprocess.run(
        [*argv, *remote.args, *extra],
        env=remote.env,
        cwd=dest.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_folder(root: Path) -> None:
    """Every kind of thing a folder holds: modes, an empty folder, symlinks (one dangling),
    non-ASCII NFC names, an empty file, a folder paged into several nodes, a file of more
    than 16 MiB (repeating content), and a read-only folder with a file inside."""
    for folder in ("notes", "bin", "private", "readonly", "empty", "café", "many"):
        (root / folder).mkdir(parents=True)
    (root / "notes/todo.md").write_text("buy milk\n")
    (root / "zero.txt").write_bytes(b"")
    (root / "bin/run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "bin/run.sh").chmod(0o755)
    (root / "private/secret.txt").write_text("s3cret")
    (root / "private/secret.txt").chmod(0o600)
    (root / "private").chmod(0o700)
    (root / "café/Ωmega ü.md").write_text("ünïcode\n")
    (root / "latest").symlink_to("notes/todo.md")
    (root / "broken").symlink_to("../outside/nowhere")
    for i in range(700):
        (root / "many" / f"n{i:04d}.txt").write_text(f"{i % 7}\n")
    rng = random.Random(7)
    same, other = rng.randbytes(4 * MIB), rng.randbytes(4 * MIB)
    (root / "big.bin").write_bytes(same + other + same + other + b"tail" * 1000)
    (root / "readonly/kept.txt").write_text("kept\n")
    (root / "readonly").chmod(0o555)


def node(remote: Remote, key: str) -> dict:
    data = remote.get(f"roots/r1/{sharded('trees', key)}")
    assert hashlib.sha256(data).hexdigest() == key
    found: dict = json.loads(data)
    return found


def test_rebuilds_the_folder_byte_for_byte(where: Remote, tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "out" / "dest"
    make_folder(source)
    dest.parent.mkdir()
    build_bucket(where, source)
    # the bucket holds what this test claims to read: a paged folder, nested folders
    head = json.loads(where.get("roots/r1/devices/laptop/head.json"))
    top = {e["name"]: e for e in node(where, head["tree"])["entries"]}
    assert len(node(where, top["many"]["tree"])["pages"]) >= 2
    assert top["big.bin"]["size"] > 16 * MIB
    assert len(top["big.bin"]["chunks"]) >= 2  # dropbeard stores it in chunks (SPEC 1.6)

    done = read_bucket(where, dest)

    assert done.returncode == 0, done.stderr
    assert tree(dest) == tree(source)
    assert os.listdir(dest.parent) == ["dest"]


def test_rebuilds_a_file_stored_in_chunks(tmp_path: Path) -> None:
    """SPEC 1.6: a file over 16 MiB as a list of chunks (two of them one blob), as
    tests/format2.py writes it: concatenated, checked chunk by chunk and whole."""
    remote, source = local_remote(tmp_path / "remote"), tmp_path / "source"
    source.mkdir()
    rng = random.Random(11)
    same, other = rng.randbytes(4 * MIB), rng.randbytes(4 * MIB)
    (source / "big.bin").write_bytes(same + other + same + other + b"tail" * 1000)
    root = Writer(remote.put).publish(describe(source))
    (big,) = node(remote, root)["entries"]
    assert len(big["chunks"]) >= 3

    done = read_bucket(remote, tmp_path / "dest")

    assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "dest") == tree(source)


def test_reads_a_named_snapshot_instead_of_the_head(tmp_path: Path) -> None:
    remote = local_remote(tmp_path / "remote")
    source = tmp_path / "source"
    (source / "docs").mkdir(parents=True)
    (source / "docs/a.md").write_text("first\n")
    first = build_bucket(remote, source)
    before = tree(source)
    (source / "docs/a.md").write_text("second, longer\n")
    (source / "new.md").write_text("new\n")
    build_bucket(remote, source)

    old = read_bucket(remote, tmp_path / "old", "--snapshot", first)
    new = read_bucket(remote, tmp_path / "new")

    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    assert tree(tmp_path / "old") == before
    assert tree(tmp_path / "new") == tree(source)


def cut_names(count: int) -> list[str]:
    """`count` names after each of which SPEC 1.1 cuts a page (SHA-256 word below 2048)."""
    found, i = [], 0
    while len(found) < count:
        name, i = f"l{i:06d}", i + 1
        if int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big") < 2048:
            found.append(name)
    return found


def test_follows_index_levels_of_a_huge_folder(tmp_path: Path) -> None:
    """A folder cut into more than 256 pages gets index pages under its index (SPEC 1.1):
    its names are chosen so pages are short, as 40,000 ordinary names would make them."""
    remote, source = local_remote(tmp_path / "remote"), tmp_path / "source"
    (source / "huge").mkdir(parents=True)
    for name in cut_names(300):
        os.symlink("target", source / "huge" / name)
        (source / "huge" / f"{name}x").write_text(name)
    build_bucket(remote, source)
    head = json.loads(remote.get("roots/r1/devices/laptop/head.json"))
    (huge,) = node(remote, head["tree"])["entries"]
    index = node(remote, huge["tree"])["pages"]
    assert 1 <= len(index) <= 256 and "pages" in node(remote, index[0]["tree"])

    done = read_bucket(remote, tmp_path / "dest")

    assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "dest") == tree(source)


# --- refusals: one line, exit 1, nothing written outside DEST ------------------------------

SMALL = Folder(
    {
        "notes": Folder({"todo.md": File(b"buy milk\n")}),
        "a.txt": File(b"a\n"),
        "link": Link("a.txt"),
    }
)


def refused(remote: Remote, tmp_path: Path, *extra: str) -> tuple[str, Path]:
    """Run the reader into tmp_path/out/dest; (its one line on stderr, dest)."""
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "dest"
    done = read_bucket(remote, dest, *extra)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("read_bucket: "), done.stderr
    assert os.listdir(out) in ([], ["dest"])  # nothing beside DEST
    return lines[0], dest


@pytest.mark.parametrize(
    ("other", "says"), [(b"buy beer\n", "corrupted"), (b"buy milk\n" * 9000, "is too large")]
)
def test_a_corrupted_blob_is_refused_and_its_file_not_left(
    other: bytes, says: str, where: Remote, tmp_path: Path
) -> None:
    Writer(where.put).publish(SMALL)
    sha = hashlib.sha256(b"buy milk\n").hexdigest()
    where.put(f"roots/r1/{sharded('blobs', sha)}", other)

    line, dest = refused(where, tmp_path)

    assert line.startswith("read_bucket: notes/todo.md: ") and sha in line and says in line
    assert not (dest / "notes/todo.md").exists()


def test_a_corrupted_chunk_is_refused(tmp_path: Path) -> None:
    remote = local_remote(tmp_path / "remote")
    data = random.Random(3).randbytes(17 * MIB)
    Writer(remote.put).publish(Folder({"big.bin": File(data)}))
    second = hashlib.sha256(data[4 * MIB : 8 * MIB]).hexdigest()
    remote.put(f"roots/r1/{sharded('blobs', second)}", data[: 4 * MIB])

    line, dest = refused(remote, tmp_path)

    assert f"blob {second} corrupted" in line
    assert not (dest / "big.bin").exists()


def test_a_node_whose_bytes_do_not_match_its_key_is_refused(where: Remote, tmp_path: Path) -> None:
    root = Writer(where.put).publish(SMALL)
    (notes,) = (e["tree"] for e in node(where, root)["entries"] if e["name"] == "notes")
    other = json.dumps({"format": 2, "entries": []}).encode()
    where.put(f"roots/r1/{sharded('trees', notes)}", other)

    line, dest = refused(where, tmp_path)

    assert f"tree {notes} does not match its key" in line
    assert not dest.exists() or os.listdir(dest) == []


def test_a_format_1_head_is_refused_naming_the_format(where: Remote, tmp_path: Path) -> None:
    Writer(where.put).publish(SMALL)
    head = {"format": 1, "device_id": "laptop", "manifest": "20260522T180500Z",
            "manifest_sha256": "0" * 64, "published_at": "2026-05-22T18:05:00Z",
            "tombstone_seq": 0, "seen": {}}  # fmt: skip
    where.put("roots/r1/devices/laptop/head.json", json.dumps(head).encode())

    line, dest = refused(where, tmp_path)

    assert "devices/laptop/head.json: format 1, this reader reads 2" in line
    assert not dest.exists() or os.listdir(dest) == []


@pytest.mark.parametrize(
    "name", ["..", ".", "../escape", "a/b", "ABSOLUTE", "nul\0byte", ".dropbear", "", "cafe\u0301"]
)
def test_a_hostile_name_is_refused_before_anything_is_written(name: str, tmp_path: Path) -> None:
    remote = local_remote(tmp_path / "remote")
    if name == "ABSOLUTE":
        name = str(tmp_path / "out" / "absolute")
    hostile = Folder({"a.txt": File(b"a\n"), name: File(b"evil\n")})
    Writer(remote.put).publish(hostile)

    line, dest = refused(remote, tmp_path)

    assert "name" in line
    assert not dest.exists() or os.listdir(dest) == []
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out/absolute").exists()


def test_a_hostile_name_deep_inside_is_refused_too(tmp_path: Path) -> None:
    remote = local_remote(tmp_path / "remote")
    Writer(remote.put).publish(Folder({"a": Folder({"b": Folder({"../../x": File(b"x")})})}))

    line, dest = refused(remote, tmp_path)

    assert line == "read_bucket: a/b: refusing the name '../../x'"
    assert not dest.exists() or os.listdir(dest) == []


def test_a_tree_that_names_more_paths_than_allowed_is_refused(tmp_path: Path) -> None:
    """Nodes are content-addressed, so one node may be named under many names: forty
    levels of two names for the same folder are a few hundred bytes naming 2**40 files."""
    remote = local_remote(tmp_path / "remote")
    writer = Writer(remote.put)
    key = writer.node({"format": 2, "entries": [writer.entry("f.txt", File(b"x"))]})
    for _ in range(40):
        twins = [
            {"name": n, "type": "dir", "mode": 0o755, "version": {"laptop": 1}, "tree": key}
            for n in ("a", "b")
        ]
        key = writer.node({"format": 2, "entries": twins})
    writer.publish(Folder({}))  # the registry, a snapshot and a head; then point it at `key`
    head = json.loads(remote.get("roots/r1/devices/laptop/head.json"))
    remote.put("roots/r1/devices/laptop/head.json", json.dumps({**head, "tree": key}).encode())

    line, dest = refused(remote, tmp_path, "--max-entries", "1000")

    assert line.endswith("the tree names more than 1000 paths (--max-entries)")
    assert not dest.exists() or os.listdir(dest) == []


def test_the_reader_imports_nothing_of_dropbeard() -> None:
    """Standalone: the standard library, plus boto3/botocore for S3."""
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "__future__"}
    found = set()
    for n in ast.walk(ast.parse(READER.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import):
            found |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            found.add(n.module.split(".")[0])
    assert found and found <= allowed, found - allowed
