"""The last step of a pass: recording what it did in state.sqlite, in one transaction,
after every bucket write it describes succeeded (IO: state.sqlite)."""

from __future__ import annotations

import msgspec

from dropbeard.core.passrules import problems_after, stat_rows
from dropbeard.core.plan import Plan
from dropbeard.core.problems import Problem, is_device_problem
from dropbeard.sync.apply import Applied
from dropbeard.sync.localscan import LocalScan
from dropbeard.sync.publication import Uploaded
from dropbeard.sync.remote import RemoteRead
from dropbeard.sync.state import Peer, State
from dropbeard.sync.treepublish import Publication


class PassOutcome(msgspec.Struct, frozen=True):
    """What one pass did, as its commit records it and its summary counts it: the scan
    (`local`), the folder changes (`applied`), the final plan and the blobs sent
    (`uploaded`), what was published (`publication`), and the other devices it settled
    with (`settled`: None in a mode that does not pull). `only` is what the pass scanned
    (None: the whole root); `halted` the mass-delete halt it reported
    (`DeleteGuard.reported`), kept for `status`; `untracked` the tracked paths an ignore
    rule now covers, which stop being tracked; `ignore_digest` the rules it ran with;
    `carried` the paths its earlier batches left open (`dropbeard.sync.batches`)."""

    local: LocalScan
    applied: Applied
    uploaded: Uploaded
    publication: Publication
    settled: RemoteRead | None
    only: frozenset[str] | None
    #: the problems of the steps before the scan (this device's own head)
    found: list[Problem] = msgspec.field(default_factory=list)
    halted: str | None = None
    untracked: list[str] = msgspec.field(default_factory=list)
    ignore_digest: str | None = None
    #: paths left open by the batches this pass committed before (`sync.batches`)
    carried: set[str] = msgspec.field(default_factory=set)

    @property
    def pending(self) -> set[str]:
        """The paths the next pass reconciles whatever changes: those the plan left open,
        those whose download, copy or delete failed (they kept their old base), and
        those with a problem (not another device's)."""
        pending = self.plan.unsettled | self.applied.failed | self.carried
        pending.update(p.path for p in self.problems if not is_device_problem(p))
        return pending

    @property
    def plan(self) -> Plan:
        """The plan the pass carried out (after any re-plan of the upload step)."""
        return self.uploaded.plan

    @property
    def problems(self) -> list[Problem]:
        """Every problem this pass found, in the order the steps found them."""
        return [
            *self.found,
            *self.local.result.problems,
            *(self.settled.problems if self.settled is not None else []),
            *self.applied.problems,
            *self.uploaded.problems,
            *self.publication.problems,
            *self.plan.problems,
        ]


def commit_pass(state: State, outcome: PassOutcome) -> None:
    """Record the pass: new bases and statuses (except paths that failed, which keep their
    old base), stat-cache rows, the version counter, what was published, each settled
    device as processed, and the problems. Runs in a worker thread."""
    plan, local, applied = outcome.plan, outcome.local, outcome.applied
    stats = stat_rows(local.result.items, local.cache, applied.stats, local.racy_after_ns)
    bases = [(p, b) for p, b in plan.base.items() if p not in applied.failed]
    problems = outcome.problems
    if outcome.only is not None:  # a pass over some paths settles only their problems
        problems = problems_after(state.problems(), problems, outcome.only)
    # A path's base and stat row go in one write (`State.put_bases`); one this pass stops
    # tracking keeps only its stat row, as before (its base is forgotten first).
    gone = set(outcome.untracked)
    stat_of = {path: row for path, row in stats if path not in gone}
    with state.transaction():
        state.put_bases(bases, stat_of)
        state.put_bases((p, None) for p in outcome.untracked)
        state.put_stats([*stat_of.items(), *((p, r) for p, r in stats if p in gone)])
        state.replace_pending(outcome.pending)
        if outcome.ignore_digest is not None:
            state.set_meta("ignore_digest", outcome.ignore_digest)
        state.set_meta("counter", str(plan.counter))
        _record_published(state, outcome.publication)
        if outcome.settled is not None:
            _record_settled(state, outcome.settled)
        state.replace_problems(problems)
        _record_halt(state, outcome)


def _record_halt(state: State, outcome: PassOutcome) -> None:
    """Keep the pass's mass-delete halt for `status` until a pass sees the whole root
    without one (a pass over some paths may not see the deletes that tripped it)."""
    if outcome.halted is not None:
        state.set_meta("halted", outcome.halted)
    elif outcome.only is None:
        state.delete_meta("halted")


def _record_published(state: State, publication: Publication) -> None:
    published = publication.published
    if published is not None:
        state.set_meta("tombstone_seq", str(published.tombstone_seq))
        state.set_meta("last_snapshot", published.snapshot)
        state.set_meta("last_tree", published.listing.tree)
        state.set_meta("last_files", str(published.listing.files))
        state.set_meta("last_bytes", str(published.listing.bytes))
    head = publication.head
    if head is not None:
        state.set_meta("head_etag", head.etag)
        state.set_meta("head_seen", msgspec.json.encode(head.seen).decode())
        state.set_meta("head_written_at", msgspec.json.encode(head.at).decode())


def _record_settled(state: State, read: RemoteRead) -> None:
    if read.registry_etag is not None:
        state.set_meta("registry_etag", read.registry_etag)
        state.set_meta("registry_json", msgspec.json.encode(read.registry).decode())
    for dev, view in read.devices.items():
        state.put_peer(Peer(dev, view.head_etag, view.snapshot, view.tree, view.tombstone_seq))
