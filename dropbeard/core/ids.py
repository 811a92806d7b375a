"""The identifiers bucket objects and keys hold: root and device ids, and the SHA-256
digests that name blobs (pure)."""

from __future__ import annotations

import re

from dropbeard.core.errors import quoted

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def validate_id(value: str) -> str:
    """`value` if it is a valid root or device id: 1–64 chars of `[a-z0-9._-]` starting
    with a letter or digit; else ValueError."""
    if not _ID.fullmatch(value):
        raise ValueError(
            f"{quoted(value)} is not a valid id (1-64 of a-z 0-9 . _ -, "
            "starting with a letter or digit)"
        )
    return value


def validate_sha256(value: str) -> str:
    """`value` if it is a lowercase hex SHA-256 digest (64 chars), else ValueError."""
    if not _SHA256.fullmatch(value):
        raise ValueError(f"{quoted(value)} is not a lowercase hex SHA-256")
    return value
