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


DEVICES = "devices/"


def device_problem(device_id: str, message: str) -> Problem:
    """A problem with another device as a whole (its objects in the bucket cannot be
    trusted: exit 11 at the end of the pass, like a blob failing its hash). It is
    recorded under `devices/<id>/`, the device's folder in the bucket, which no path of a
    root can be (a path never ends with '/')."""
    return Problem(path=f"{DEVICES}{device_id}/", kind="integrity", message=message)


def is_device_problem(problem: Problem) -> bool:
    """True for a `device_problem`: settled by every pass that reads the other devices."""
    return problem.path.startswith(DEVICES) and problem.path.endswith("/")
