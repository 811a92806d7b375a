"""The bucket key layout of one root (SPEC section 1), relative to the store's base (pure).

```
roots/<root_id>/blobs/<h0h1>/<h2h3>/<sha256>
roots/<root_id>/trees/<h0h1>/<h2h3>/<sha256>           (one tree node)
roots/<root_id>/devices/registry.json
roots/<root_id>/devices/<device_id>/head.json
roots/<root_id>/devices/<device_id>/snapshots/<YYYYMMDDTHHMMSSZ>.json
roots/<root_id>/devices/<device_id>/tombstones/<seq, 20 digits>.json
roots/<root_id>/devices/<device_id>/probe-<hex>.tmp     (only while `init` runs)
```

Builders validate their arguments and parsers reject any key that does not match the
layout exactly, both with ValueError.
"""

from __future__ import annotations

from dropbeard.core.ids import validate_id, validate_sha256
from dropbeard.core.timestamps import validate_snapshot_id

SEQ_DIGITS = 20
ROOTS_PREFIX = "roots/"
"""Where every root of a remote lives: list it with delimiter "/" to find the roots."""
_HEAD = "head.json"
_REGISTRY = "registry.json"
_SNAPSHOTS = "snapshots/"
_TOMBSTONES = "tombstones/"
_JSON = ".json"


def root_id_of(prefix: str) -> str:
    """The root id of a listed prefix `roots/<root_id>/`; ValueError for anything else."""
    if not prefix.startswith(ROOTS_PREFIX) or not prefix.endswith("/"):
        raise ValueError(f"{prefix!r} is not a root's folder")
    return validate_id(prefix[len(ROOTS_PREFIX) : -1])


class RootKeys:
    """Keys of the root `root_id`. Prefixes end in `/`, ready for listing."""

    __slots__ = (
        "blobs_prefix",
        "devices_prefix",
        "prefix",
        "registry",
        "root_id",
        "trees_prefix",
    )

    def __init__(self, root_id: str) -> None:
        self.root_id = validate_id(root_id)
        self.prefix = f"{ROOTS_PREFIX}{root_id}/"
        self.blobs_prefix = f"{self.prefix}blobs/"
        self.trees_prefix = f"{self.prefix}trees/"
        self.devices_prefix = f"{self.prefix}devices/"
        self.registry = f"{self.devices_prefix}{_REGISTRY}"

    def __repr__(self) -> str:
        return f"RootKeys({self.root_id!r})"

    # --- builders

    def blob(self, sha256: str) -> str:
        """The key of the blob with lowercase hex digest `sha256`, sharded `ab/cd/abcd…`."""
        validate_sha256(sha256)
        return f"{self.blobs_prefix}{sha256[0:2]}/{sha256[2:4]}/{sha256}"

    def tree(self, sha256: str) -> str:
        """The key of the tree node with lowercase hex digest `sha256`, sharded like blobs."""
        validate_sha256(sha256)
        return f"{self.trees_prefix}{sha256[0:2]}/{sha256[2:4]}/{sha256}"

    def device_prefix(self, device_id: str) -> str:
        return f"{self.devices_prefix}{validate_id(device_id)}/"

    def head(self, device_id: str) -> str:
        return self.device_prefix(device_id) + _HEAD

    def snapshots_prefix(self, device_id: str) -> str:
        return self.device_prefix(device_id) + _SNAPSHOTS

    def snapshot(self, device_id: str, snapshot: str) -> str:
        """The key of snapshot `snapshot` (its id, `YYYYMMDDTHHMMSSZ`) of `device_id`."""
        validate_snapshot_id(snapshot)
        return f"{self.snapshots_prefix(device_id)}{snapshot}{_JSON}"

    def probe(self, device_id: str, token: str) -> str:
        """A scratch object `init` writes and deletes in the device's own folder, to learn
        which conditional writes the server honours. `token`: 1-32 lowercase hex digits."""
        if not 0 < len(token) <= 32 or token.strip("0123456789abcdef"):
            raise ValueError(f"probe token {token!r} is not lowercase hex")
        return f"{self.device_prefix(device_id)}probe-{token}.tmp"

    def tombstones_prefix(self, device_id: str) -> str:
        return self.device_prefix(device_id) + _TOMBSTONES

    def tombstone(self, device_id: str, seq: int) -> str:
        """The key of tombstone batch `seq`, zero-padded so keys sort in seq order."""
        if not 0 <= seq < 10**SEQ_DIGITS:
            raise ValueError(f"tombstone seq {seq} is out of range")
        return f"{self.tombstones_prefix(device_id)}{seq:0{SEQ_DIGITS}d}{_JSON}"

    # --- parsers

    def device_of(self, key: str) -> str | None:
        """The device id of a key or listed prefix under `devices/` (`…/devices/laptop/`,
        `…/devices/laptop/head.json`), or None for `registry.json`."""
        rest = self._under(key, self.devices_prefix)
        if rest == _REGISTRY:
            return None
        device, slash, _ = rest.partition("/")
        if not slash:
            raise ValueError(f"key {key!r} is not in a device's folder")
        try:
            return validate_id(device)
        except ValueError:
            raise ValueError(f"key {key!r} names an invalid device id") from None

    def snapshot_id_of(self, key: str) -> str:
        """The snapshot id of a snapshot key."""
        name = self._device_file(key, _SNAPSHOTS)
        try:
            return validate_snapshot_id(name)
        except ValueError:
            raise ValueError(f"key {key!r} is not a snapshot key") from None

    def seq_of(self, key: str) -> int:
        """The seq of a tombstone key."""
        name = self._device_file(key, _TOMBSTONES)
        if len(name) != SEQ_DIGITS or not name.isascii() or not name.isdigit():
            raise ValueError(f"key {key!r} is not a tombstone key")
        return int(name)

    def sha256_of(self, key: str) -> str:
        """The digest of a blob key (for listings in `verify` and `gc`)."""
        return self._sharded(key, self.blobs_prefix, "blob")

    def tree_sha256_of(self, key: str) -> str:
        """The digest of a tree node's key (for listings in `verify` and `gc`)."""
        return self._sharded(key, self.trees_prefix, "tree")

    def _sharded(self, key: str, prefix: str, kind: str) -> str:
        rest = self._under(key, prefix)
        digest = rest[6:]
        try:
            if rest != f"{digest[0:2]}/{digest[2:4]}/{digest}":
                raise ValueError
            return validate_sha256(digest)
        except ValueError:
            raise ValueError(f"key {key!r} is not a {kind} key") from None

    def _under(self, key: str, prefix: str) -> str:
        if not key.startswith(prefix):
            raise ValueError(f"key {key!r} is not under {prefix}")
        return key[len(prefix) :]

    def _device_file(self, key: str, folder: str) -> str:
        """`<name>` of `devices/<device_id>/<folder><name>.json`, with a valid device id."""
        device = self.device_of(key)
        if device is None:
            raise ValueError(f"key {key!r} is not in a device's folder")
        name = self._under(key, self.device_prefix(device) + folder)
        if not name.endswith(_JSON) or "/" in name:
            raise ValueError(f"key {key!r} is not a .json object in {folder}")
        return name[: -len(_JSON)]
