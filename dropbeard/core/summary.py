"""The summary of one pass: what `sync --json` prints and the daemon logs in `tick_end`
(pure)."""

from __future__ import annotations

import msgspec

from dropbeard.core.plan import Plan
from dropbeard.core.units import human_bytes


class Summary(msgspec.Struct, kw_only=True):
    root: str
    root_id: str
    device_id: str
    mode: str
    dry_run: bool = False
    scanned: int = 0
    hashed: int = 0
    hashed_bytes: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_existing: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    deleted_local: int = 0
    conflict_copies: int = 0
    tombstones: int = 0
    conflicts: int = 0
    problems: int = 0
    snapshot: str | None = None
    halted: str | None = None
    #: what the plan intends (for --dry-run and progress): downloads, deletes, uploads
    planned_downloads: int = 0
    planned_local_deletes: int = 0
    planned_uploads: int = 0
    planned_tombstones: int = 0
    planned_conflict_copies: int = 0
    duration_s: float = 0.0

    def count_plan(self, plan: Plan) -> None:
        self.planned_downloads = len(plan.downloads)
        self.planned_local_deletes = len(plan.local_deletes)
        self.planned_uploads = len(plan.uploads)
        self.planned_tombstones = len(plan.tombstones)
        self.planned_conflict_copies = len(plan.conflict_copies)
        self.conflicts = len(plan.conflicts)

    def then(self, later: Summary) -> Summary:
        """This pass and the one run right after it as one: what both did, added; what
        is left to settle, as the later one found it."""
        done = (
            "hashed",
            "hashed_bytes",
            "uploaded",
            "uploaded_bytes",
            "skipped_existing",
            "downloaded",
            "downloaded_bytes",
            "deleted_local",
            "conflict_copies",
            "tombstones",
            "duration_s",
        )
        both = msgspec.structs.replace(
            later, **{name: getattr(self, name) + getattr(later, name) for name in done}
        )
        both.duration_s = round(both.duration_s, 3)
        both.snapshot = later.snapshot or self.snapshot
        return both

    def finish(self, began: float, now: float) -> None:
        """Record the pass's duration (monotonic seconds; core reads no clock)."""
        self.duration_s = round(now - began, 3)

    def describe(self) -> str:
        """The pass in one line, as `sync` prints it and the daemon logs it on a terminal."""
        verb = "would sync" if self.dry_run else "synced"
        parts = [f"scanned {self.scanned}", f"hashed {self.hashed}"]
        if self.dry_run:
            parts += [
                f"{self.planned_uploads} to upload",
                f"{self.planned_downloads} to download",
                f"{self.planned_local_deletes} to delete here",
                f"{self.planned_tombstones} deletes to publish",
            ]
            if self.planned_conflict_copies:
                parts.append(f"{self.planned_conflict_copies} conflict copies to write")
        else:
            parts += self._done()
        if self.conflicts:
            parts.append(f"{self.conflicts} conflicts")
        if self.problems:
            parts.append(f"{self.problems} problems")
        tail = f"; published snapshot {self.snapshot}" if self.snapshot else "; nothing to publish"
        if self.dry_run:
            tail = ""
        return (
            f"{verb} {self.root} ({self.root_id}/{self.device_id}): {', '.join(parts)}{tail} "
            f"in {self.duration_s:.2f}s"
        )

    def _done(self) -> list[str]:
        parts = [f"uploaded {self.uploaded} ({human_bytes(self.uploaded_bytes)})"]
        if self.skipped_existing:
            parts.append(f"{self.skipped_existing} already in the bucket")
        if self.downloaded:
            parts.append(f"downloaded {self.downloaded} ({human_bytes(self.downloaded_bytes)})")
        if self.deleted_local:
            parts.append(f"deleted {self.deleted_local} here")
        if self.conflict_copies:
            parts.append(f"wrote {self.conflict_copies} conflict copies")
        if self.tombstones:
            parts.append(f"published {self.tombstones} deletes")
        return parts
