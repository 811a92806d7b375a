"""A problem with one path: recorded, counted and shown, never fatal to a pass (pure)."""

from __future__ import annotations

import msgspec


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """`kind` is a short stable word (`permission`, `invalid_name`, `name_collision`,
    `case_collision`, `changed_while_reading`, `missing_blob`, `type_clash`,
    `unsafe_path`, ...); `message` is one human line."""

    path: str
    kind: str
    message: str
