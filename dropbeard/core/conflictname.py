"""Names of conflict copies, `<stem>.conflict-<device_id>-<YYYYMMDDTHHMMSSZ><ext>` (pure).

SPEC 4.4: the copy sits beside the original; `<ext>` is the last extension, none for a
name without a dot or whose only dot leads it (`.bashrc`). Parsing reads the timestamp
from the end, so device ids may contain hyphens. A device id that itself contains
`.conflict-` is ambiguous with a stem that does; the parser then prefers the longest
stem (the shortest device id).
"""

from __future__ import annotations

from dropbeard.core.ids import validate_id
from dropbeard.core.paths import MAX_SEGMENT_BYTES, validate_path
from dropbeard.core.timestamps import validate_snapshot_id

MARKER = ".conflict-"
_TIMESTAMP_LEN = len("20260522T180500Z")


def _split_ext(name: str) -> tuple[str, str]:
    """(stem, ext) of a file name: ext is the last `.xxx`, empty for `name`, `.name`
    and `name.` (a trailing dot is not an extension)."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return name, ""
    return name[:dot], name[dot:]


def conflict_name(path: str, device_id: str, snapshot: str) -> str:
    """The path of the conflict copy of `path` holding `device_id`'s version from its
    snapshot `snapshot`. ValueError if an argument is invalid or the copy's name
    would exceed 255 bytes (the caller reports that as a problem for the path)."""
    validate_path(path)
    validate_id(device_id)
    validate_snapshot_id(snapshot)
    parent, _, name = path.rpartition("/")
    stem, ext = _split_ext(name)
    copy = f"{stem}{MARKER}{device_id}-{snapshot}{ext}"
    if len(copy.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise ValueError(f"conflict copy name for {path!r} would exceed {MAX_SEGMENT_BYTES} bytes")
    return f"{parent}/{copy}" if parent else copy


def parse_conflict_name(path: str) -> tuple[str, str, str] | None:
    """(original path, device_id, snapshot) if `path` is a conflict copy's name as
    `conflict_name` makes them, else None."""
    if MARKER not in path:
        return None  # every copy's name holds the marker: most paths end here, cheaply
    parent, _, name = path.rpartition("/")
    stem, ext = _split_ext(name)
    # The copy either has no extension, or carries the original's after the timestamp.
    for body, original_ext in ((name, ""), (stem, ext)):
        parsed = _parse_body(body)
        if parsed is None:
            continue
        original_stem, device_id, snapshot = parsed
        original = original_stem + original_ext
        if parent:
            original = f"{parent}/{original}"
        try:
            if conflict_name(original, device_id, snapshot) == path:
                return original, device_id, snapshot
        except ValueError:
            continue
    return None


def _parse_body(body: str) -> tuple[str, str, str] | None:
    """(stem, device_id, snapshot) of `<stem>.conflict-<device_id>-<snapshot>`."""
    snapshot = body[-_TIMESTAMP_LEN:]
    rest = body[: -_TIMESTAMP_LEN - 1]
    if body[-_TIMESTAMP_LEN - 1 : -_TIMESTAMP_LEN] != "-":
        return None
    marker = rest.rfind(MARKER)
    if marker <= 0:
        return None
    return rest[:marker], rest[marker + len(MARKER) :], snapshot
