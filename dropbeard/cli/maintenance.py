"""`dropbeard verify`, `gc` and `retention`: looking after the bucket (IO: store, stdout).

`verify` exits 11 naming every missing or corrupt object and the paths that reference
it; `gc` prints what it deleted (or would) and what that frees; `retention` shows or
changes the root's policy in `registry.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dropbeard.cli.bucketargs import chosen_root
from dropbeard.cli.rootbucket import open_root_bucket
from dropbeard.cli.terminal import human_bytes
from dropbeard.core.errors import ExitCode, UsageError
from dropbeard.core.model import DEFAULT_RETENTION, Registry
from dropbeard.core.retention import MIN_SAFE_GRACE, Policy, format_period, parse_period
from dropbeard.core.sweep import Listed
from dropbeard.sync.gc import GcReport, collect_garbage, policy_of
from dropbeard.sync.registry import read_registry, update_registry
from dropbeard.sync.repair import repair_own_head
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.verify import VerifyReport, verify_bucket

RULES = ("all", "hourly", "daily", "weekly")
_RULE_HELP = {
    "all": "every snapshot younger than this",
    "hourly": "the newest snapshot of each hour younger than this",
    "daily": "the newest snapshot of each day younger than this",
    "weekly": "the newest snapshot of each ISO week younger than this",
    "grace": "how old an object nothing reaches must be before gc deletes it",
}


def _emit_json(obj: Any) -> None:
    sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")


# --- verify ---------------------------------------------------------------------------


async def verify_command(args: argparse.Namespace) -> int:
    if args.repair:
        if args.all or args.full or args.sample is not None:
            raise UsageError(
                "verify --repair checks this device's head only: no --all, --full or --sample"
            )
        return await _repair(args)
    share = 1.0 if args.full else (args.sample or 0.0) / 100
    if not 0 <= share <= 1:
        raise UsageError("--sample takes a percentage from 0 to 100")
    async with open_root_bucket(_root(args)) as rb:
        report = await verify_bucket(
            rb.store,
            rb.keys,
            rb.trees(cached=not args.full),  # --full reads every node from the bucket
            all_snapshots=args.all,
            share=share,
            snapshots=rb.reader(),
        )
    if args.json:
        _emit_json(_verify_json(report))
    else:
        _print_verify(report, args.quiet)
    return ExitCode.OK if report.ok else ExitCode.INTEGRITY


async def _repair(args: argparse.Namespace) -> int:
    async with open_root_bucket(_root(args)) as rb:
        written = rb.paths.trees
        cache = NodeCache(written) if await anyio.Path(written).is_dir() else None
        report = await repair_own_head(
            rb.store, rb.keys, rb.device_id, rb.paths.root, rb.trees(), cache
        )
    if args.json:
        out = _verify_json(report.verify)
        out.update(ok=report.ok, reuploaded=report.reuploaded, unrepaired=report.unrepaired)
        _emit_json(out)
    else:
        for key in report.reuploaded:
            print(f"REPAIRED {key} (uploaded again from this device)")
        for line in report.unrepaired:
            print(f"UNREPAIRED {line}")
        for line in report.verify.unreadable:
            print(f"UNREADABLE {line}")
        if not args.quiet:
            verdict = "ok" if report.ok else f"{len(report.unrepaired)} problems left"
            print(f"verified this device's head, repaired {len(report.reuploaded)}: {verdict}")
    return ExitCode.OK if report.ok else ExitCode.INTEGRITY


def _verify_json(r: VerifyReport) -> dict[str, Any]:
    return {
        "ok": r.ok,
        "heads": r.heads,
        "snapshots": r.snapshots,
        "trees": r.nodes,
        "blobs": r.blobs,
        "rehashed": r.rehashed,
        "rehashed_bytes": r.rehashed_bytes,
        "problems": [
            {"kind": f.kind, "key": f.key, "problem": f.problem,
             "paths": [{"path": w.path, "where": w.label} for w in f.where]}
            for f in r.findings
        ] + [{"kind": "object", "problem": line} for line in r.unreadable],
    }  # fmt: skip


def _print_verify(r: VerifyReport, quiet: bool) -> None:
    for line in r.unreadable:
        print(f"UNREADABLE {line}")
    for f in r.findings:
        print(f"{f.problem.split(':')[0].upper()} {f.line()}")
    if quiet and r.ok:
        return
    rehashed = f", re-hashed {r.rehashed:,} ({human_bytes(r.rehashed_bytes)})" if r.rehashed else ""
    verdict = "ok" if r.ok else f"{len(r.findings) + len(r.unreadable)} problems"
    snapshots = f" and {r.snapshots:,} snapshots" if r.snapshots else ""
    print(
        f"verified {r.heads} heads{snapshots}: {r.nodes:,} tree nodes, {r.blobs:,} blobs"
        f"{rehashed}: {verdict}"
    )


# --- gc -------------------------------------------------------------------------------


async def gc_command(args: argparse.Namespace) -> int:
    async with open_root_bucket(_root(args)) as rb:
        report = await collect_garbage(
            rb.store, rb.keys, rb.trees(), dry_run=args.dry_run, snapshots=rb.reader()
        )
    if report.warning:
        print(f"dropbeard: warning: {report.warning}", file=sys.stderr)
    if args.json:
        _emit_json(_gc_json(report))
    elif not args.quiet:
        _print_gc(report, args.verbose)
    return ExitCode.OK


def _kinds(r: GcReport) -> list[tuple[str, list[Listed]]]:
    return [
        ("snapshots", r.snapshots),
        ("tombstone batches", r.tombstones),
        ("objects of retired devices", r.retired),
        ("tree nodes", r.trees),
        ("blobs", r.blobs),
    ]


def _gc_json(r: GcReport) -> dict[str, Any]:
    return {
        "dry_run": r.dry_run,
        "deleted": {kind.split()[0]: len(objs) for kind, objs in _kinds(r)},
        "deleted_objects": len(r.deleted),
        "freed_bytes": r.freed_bytes,
        "kept_snapshots": r.kept_snapshots,
        "retired_devices": r.retired_devices,
        "spared_young": r.spared_young,
        "spared_late": r.spared_late,
        "grace": format_period(r.policy.grace),
        "warning": r.warning,
    }


def _print_gc(r: GcReport, verbose: bool) -> None:
    verb = "would delete" if r.dry_run else "deleted"
    if verbose:
        for obj in r.deleted:
            print(f"{verb} {obj.key} ({human_bytes(obj.size)})")
    parts = [f"{len(objs):,} {kind}" for kind, objs in _kinds(r) if objs]
    print(f"{verb} {', '.join(parts) or 'nothing'}")
    print(f"{'would free' if r.dry_run else 'freed'} {len(r.deleted):,} objects, "
          f"{human_bytes(r.freed_bytes)}")  # fmt: skip
    for device in r.retired_devices:
        print(f"retired device {device}: its folder {'would go' if r.dry_run else 'went'}")
    grace = format_period(r.policy.grace)
    print(
        f"kept {r.kept_snapshots:,} snapshots; spared {r.spared_young:,} unreached objects "
        f"younger than {grace}" + (f" and {r.spared_late:,} in use again" if r.spared_late else "")
    )


# --- retention ------------------------------------------------------------------------


async def retention_command(args: argparse.Namespace) -> int:
    asked = {rule: getattr(args, rule) for rule in (*RULES, "grace")}
    changes = {rule: _period(rule, text) for rule, text in asked.items() if text is not None}
    async with open_root_bucket(_root(args)) as rb:
        if changes:
            registry = await update_registry(rb.store, rb.keys, _changer(changes))
        else:
            registry, _ = await read_registry(rb.store, rb.keys)
    policy = policy_of(registry)
    if policy.grace < MIN_SAFE_GRACE:
        print(
            f"dropbeard: warning: a grace period of {format_period(policy.grace)} is for "
            "tests only: a sync pass that takes longer can lose objects to gc",
            file=sys.stderr,
        )
    fields, grace = spelt_out(registry)
    if args.json:
        _emit_json({"retention": fields, "grace": grace, "changed": sorted(changes)})
    elif not args.quiet:
        print(f"retention of root {rb.keys.root_id}" + (" (changed)" if changes else "") + ":")
        for rule, value in [*fields.items(), ("grace", grace)]:
            print(f"  {rule:<7} {value:>5}  {_RULE_HELP[rule]}")
    return ExitCode.OK


def spelt_out(registry: Registry) -> tuple[dict[str, str], str]:
    """The registry's rules as written, every rule there (absent ones at their default)."""
    rules = {r: registry.retention.get(r, DEFAULT_RETENTION[r]) for r in RULES}
    return rules, registry.grace


def _period(rule: str, text: str) -> str:
    try:
        parse_period(text)
    except ValueError as exc:
        raise UsageError(f"--{rule}: {exc}") from None
    return text.strip()


def _changer(changes: dict[str, str]) -> Any:
    def change(registry: Registry) -> Registry:
        rules, grace = spelt_out(registry)
        rules.update({r: v for r, v in changes.items() if r in RULES})
        grace = changes.get("grace", grace)
        Policy.from_fields(rules, grace)  # refuse what gc could not read back
        return msgspec.structs.replace(registry, retention=rules, grace=grace)

    return change


def _root(args: argparse.Namespace) -> Path | None:
    try:
        return chosen_root(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
