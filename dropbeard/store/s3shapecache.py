"""Request shapes kept from one process to the next (IO: reads and writes a small JSON file
in the user's cache folder).

A one-shot command (`init`, `sync`) spends ~0.3 s of CPU importing aiobotocore, aiohttp
and botocore and creating its client, most of the time a small download or a "nothing
changed" pass takes; yet every request such a command makes is stamped from a shape
botocore showed an earlier process (`dropbeard.store.s3objects`). So the shapes a
process learnt are written here when its store closes, and the next process talking to
the same bucket, the same way, stamps its requests from them without importing botocore
at all (until a request needs it: a large streamed upload, an error botocore must read).

"The same way" is the file's name: a hash of everything botocore's shape depends on —
the endpoint, region, addressing style and bucket, the access key id, the `AWS_*`
environment (secrets left out), the AWS config file's size and time, and the installed
botocore's and dropbeard's own files. A shape that is still wrong is caught by the
server (`ObjectRequests` treats shapes from here as provisional). The file holds no
secret: a shape has no signature, credentials or token. Anything unreadable in it is
ignored, as if it were not there; failing to write it only costs the next process the
time saved.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import msgspec

from dropbeard.store.s3shape import Shape

#: Changes whenever what a cached shape means changes.
FORMAT = 1
#: A cache file larger than this is not read.
MAX_BYTES = 64 << 10
#: Environment variables whose values are secrets: never hashed into a file name.
_SECRET_ENV = frozenset({"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"})


class Kept(msgspec.Struct, frozen=True):
    """What a cache file holds: shapes by kind of request, and shapes seen once."""

    format: int = FORMAT
    shapes: dict[str, Shape] = {}
    seen: dict[str, Shape] = {}


def cache_folder(env: dict[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/dropbeard/s3`, by default `~/.cache/dropbeard/s3`."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "dropbeard" / "s3"


def identity(settings: dict[str, str | None], env: dict[str, str] | None = None) -> str:
    """The name of the cache file for a store with `settings` (endpoint, region,
    addressing style, bucket, access key id...) in this environment."""
    env = dict(os.environ) if env is None else env
    facts: dict[str, object] = {"format": FORMAT, "settings": settings}
    facts["env"] = sorted(
        (name, value)
        for name, value in env.items()
        if name.startswith("AWS_") and name not in _SECRET_ENV
    )
    config = env.get("AWS_CONFIG_FILE") or str(Path.home() / ".aws" / "config")
    facts["config"] = [config, *_stamp_of(Path(config))]
    for package in ("botocore", "aiobotocore", "dropbeard"):
        spec = importlib.util.find_spec(package)
        origin = spec.origin if spec is not None else None
        facts[package] = [origin, *_stamp_of(Path(origin))] if origin else None
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return digest[:40]


def _stamp_of(path: Path) -> list[int]:
    try:
        stat = path.stat()
    except OSError:
        return []
    return [stat.st_size, stat.st_mtime_ns]


class ShapeCache:
    """The cached shapes of one store, in `folder/<name>.json`."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / f"{name}.json"

    def load(self) -> Kept:
        """What is kept; nothing if the file is missing or unreadable."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                return Kept()
            kept = msgspec.json.decode(data, type=Kept)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return Kept()
        return kept if kept.format == FORMAT else Kept()

    def save(self, kept: Kept) -> None:
        """Keep `kept` (replacing what was kept), atomically; nothing if it cannot."""
        data = msgspec.json.encode(kept)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".shapes-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(temp, self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a cache: the next process learns the shapes again


__all__ = ["FORMAT", "Kept", "ShapeCache", "cache_folder", "identity"]
