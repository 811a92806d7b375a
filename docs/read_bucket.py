#!/usr/bin/env python3
"""Rebuild a folder from a dropbeard bucket (format 2) without dropbeard, checking every hash.

    python read_bucket.py SOURCE ROOT_ID DEVICE_ID DEST [--endpoint-url URL] [--snapshot TS]

SOURCE is a local-directory remote (standard library only) or s3://BUCKET[/PREFIX] (needs
boto3; credentials come from the usual AWS chain: environment, ~/.aws, AWS_PROFILE).
DEST must not exist or be empty. The script follows DEVICE_ID's head (or its snapshot TS,
e.g. 20260522T180500Z) to its root tree, checks every tree node against its key, rebuilds
files (one blob, or the concatenation of their chunks, each checked) and checks each file's
whole SHA-256, and recreates folders with their permission bits and symlinks with their
targets. Any failure ends it with one line on stderr and exit status 1; what was rebuilt
until then stays in DEST, and a file that failed its check is removed. The format is
described in FORMAT.md next to this script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import unicodedata
from pathlib import Path

ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
KEY = re.compile(r"[0-9a-f]{64}")
SNAPSHOT = re.compile(r"\d{8}T\d{6}Z")
MAX_PAGE_LEVELS = 8  # index levels above a directory's pages
MAX_DEPTH = 256  # folders inside folders
MAX_JSON = 8 << 20  # bytes of one head, snapshot or tree node
MAX_ENTRIES = 50_000_000  # paths in one tree (--max-entries): a node may be reused
# under many names, so a few crafted nodes could otherwise name more paths than any disk


class Refused(Exception):
    """Why the folder cannot be rebuilt, in one line."""


class LocalSource:
    def __init__(self, directory: str, root_id: str) -> None:
        self.base = Path(directory) / "roots" / root_id

    def get(self, key: str, most: int, where: str) -> bytes:
        """The object's bytes, refused unread if it holds more than `most`."""
        try:
            with open(self.base / key, "rb") as f:
                need(os.fstat(f.fileno()).st_size <= most, where, f"{key} is too large")
                return f.read()
        except FileNotFoundError:
            raise Refused(f"{key}: missing from the bucket") from None


class S3Source:
    def __init__(self, url: str, root_id: str, endpoint_url: str | None) -> None:
        import boto3  # only S3 needs it
        from botocore.config import Config

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.prefix += f"roots/{root_id}/"
        style = {"addressing_style": "path"} if endpoint_url else {}
        self.s3 = boto3.client("s3", endpoint_url=endpoint_url, config=Config(s3=style))

    def get(self, key: str, most: int, where: str) -> bytes:
        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.s3.exceptions.NoSuchKey:
            raise Refused(f"{key}: missing from the bucket") from None
        try:
            need(found["ContentLength"] <= most, where, f"{key} is too large")
            return found["Body"].read()
        finally:
            found["Body"].close()


Source = LocalSource | S3Source


def sharded(kind: str, sha: str) -> str:
    return f"{kind}/{sha[:2]}/{sha[2:4]}/{sha}"


def need(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise Refused(f"{where}: {problem}")


def is_int(value: object, low: int, high: int = 2**63 - 1) -> bool:
    return type(value) is int and low <= value <= high


def parse(where: str, data: bytes) -> dict:
    """A format-2 JSON object; anything else is refused, naming the format."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise Refused(f"{where}: not JSON") from None
    need(isinstance(obj, dict), where, "not a JSON object")
    need(obj.get("format") == 2, where, f"format {obj.get('format')!r}, this reader reads 2")
    return obj


def read_node(source: Source, key: str, where: str) -> dict:
    need(isinstance(key, str) and KEY.fullmatch(key) is not None, where, "bad tree key")
    data = source.get(sharded("trees", key), MAX_JSON, where)
    need(hashlib.sha256(data).hexdigest() == key, where, f"tree {key} does not match its key")
    node = parse(f"{where} (tree {key})", data)
    need(("entries" in node) != ("pages" in node), where, "a node holds entries or pages")
    return node


def listing(source: Source, key: str, where: str, level: int = 0) -> list:
    """A directory's entries, its pages (and index levels) read in order."""
    node = read_node(source, key, where)
    if "entries" in node:
        need(isinstance(node["entries"], list), where, "entries is not a list")
        return node["entries"]
    need(level < MAX_PAGE_LEVELS, where, "pages nested too deeply")
    pages = node["pages"]
    need(isinstance(pages, list) and len(pages) > 0, where, "pages is not a list")
    entries = []
    for page in pages:
        need(isinstance(page, dict) and isinstance(page.get("first"), str), where, "bad page")
        found = listing(source, page.get("tree"), where, level + 1)
        ok = len(found) > 0 and isinstance(found[0], dict) and found[0].get("name") == page["first"]
        need(ok, where, f"page {page.get('tree')} does not start at its first")
        entries += found
    return entries


def check_entry(e: object, where: str, top: bool) -> None:
    need(isinstance(e, dict) and isinstance(e.get("name"), str), where, "entry without a name")
    name = e["name"]
    bad = name in ("", ".", "..") or "/" in name or "\0" in name or (top and name == ".dropbear")
    need(not bad, where, f"refusing the name {name!r}")
    need(unicodedata.is_normalized("NFC", name), where, f"name {name!r} is not NFC")
    need(is_int(e.get("mode"), 0, 0o777), where, f"{name!r}: bad mode")
    kind = e.get("type")
    if kind == "file":
        need(isinstance(e.get("sha256"), str) and KEY.fullmatch(e["sha256"]), where, "bad sha256")
        need(is_int(e.get("size"), 0), where, f"{name!r}: bad size")
        chunks = e.get("chunks", [])
        ok = isinstance(chunks, list) and all(
            isinstance(c, list)
            and len(c) == 2
            and isinstance(c[0], str)
            and KEY.fullmatch(c[0])
            and is_int(c[1], 1)
            for c in chunks
        )
        need(ok and (not chunks or sum(c[1] for c in chunks) == e["size"]), where, "bad chunks")
    elif kind == "symlink":
        target = e.get("target")
        need(isinstance(target, str) and target and "\0" not in target, where, "bad target")
    else:
        need(kind == "dir", where, f"{name!r}: unknown type {kind!r}")


def collect(
    source: Source, key: str, rel: tuple[str, ...], out: list, most: int = MAX_ENTRIES
) -> None:
    """Every (relative path, entry) under the directory whose node is `key`, checked;
    refused past `most` paths in all."""
    where = "/".join(rel) or "the root folder"
    need(len(rel) <= MAX_DEPTH, where, "folders nested too deeply")
    last = b""
    for e in listing(source, key, where):
        need(len(out) < most, where, f"the tree names more than {most} paths (--max-entries)")
        check_entry(e, where, top=not rel)
        name = e["name"].encode()
        need(name > last, where, f"entries not sorted or repeated at {e['name']!r}")
        last = name
        path = (*rel, e["name"])
        out.append((path, e))
        if e["type"] == "dir":
            collect(source, e.get("tree"), path, out, most)


def write_file(source: Source, path: Path, rel: str, e: dict) -> None:
    pieces = e.get("chunks") or [[e["sha256"], e["size"]]]
    whole = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for sha, size in pieces:
                data = source.get(sharded("blobs", sha), size, rel)
                need(hashlib.sha256(data).hexdigest() == sha, rel, f"blob {sha} corrupted")
                need(len(data) == size, rel, f"blob {sha} has the wrong size")
                whole.update(data)
                f.write(data)
        need(whole.hexdigest() == e["sha256"], rel, "the rebuilt file's SHA-256 differs")
    except BaseException:
        path.unlink()
        raise
    os.chmod(path, e["mode"])
    if is_int(e.get("mtime_ns"), 0):
        os.utime(path, ns=(e["mtime_ns"], e["mtime_ns"]), follow_symlinks=False)


def rebuild(source: Source, tree: str, dest: Path, most: int = MAX_ENTRIES) -> int:
    """Check the whole tree first, then write it under dest; the number of entries."""
    found: list = []
    collect(source, tree, (), found, most)
    dest.mkdir(parents=True, exist_ok=True)
    dirs = []
    for rel, e in found:
        path = dest.joinpath(*rel)  # names hold no "/" and no "..": always inside dest
        if e["type"] == "dir":
            path.mkdir()
            dirs.append((path, e["mode"]))
        elif e["type"] == "symlink":
            os.symlink(e["target"], path)
        else:
            write_file(source, path, "/".join(rel), e)
    for path, mode in reversed(dirs):  # deepest first: a read-only folder is filled by now
        os.chmod(path, mode)
    return len(found)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a local-directory remote, or s3://BUCKET[/PREFIX]")
    p.add_argument("root_id")
    p.add_argument("device_id")
    p.add_argument("dest", type=Path)
    p.add_argument("--endpoint-url", help="the S3 server, when it is not AWS")
    p.add_argument("--snapshot", help="a snapshot id (YYYYMMDDTHHMMSSZ) instead of the head")
    p.add_argument(
        "--max-entries", type=int, default=MAX_ENTRIES, help="refuse a tree naming more paths"
    )
    args = p.parse_args()
    try:
        for what, value, pattern in (
            ("root id", args.root_id, ID),
            ("device id", args.device_id, ID),
            ("snapshot", args.snapshot or "00000000T000000Z", SNAPSHOT),
        ):
            need(pattern.fullmatch(value) is not None, what, f"{value!r} is not valid")
        need(not args.dest.exists() or not any(args.dest.iterdir()), "DEST", "not empty")
        if args.source.startswith("s3://"):
            source = S3Source(args.source, args.root_id, args.endpoint_url)
        else:
            source = LocalSource(args.source, args.root_id)
        device = f"devices/{args.device_id}"
        key = f"{device}/snapshots/{args.snapshot}.json" if args.snapshot else f"{device}/head.json"
        head = parse(key, source.get(key, MAX_JSON, key))
        need(head.get("device_id") == args.device_id, key, "names another device")
        need(head.get("tree") is not None, key, "this device publishes no tree")
        count = rebuild(source, head["tree"], args.dest, args.max_entries)
    except Refused as exc:
        print(f"read_bucket: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the network, the disk, a server's refusal: still one line
        print(f"read_bucket: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"rebuilt {count} entries from {args.device_id} ({key}) into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
