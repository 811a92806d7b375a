"""The grammar of the commands that read history and look after the bucket: ls,
versions, restore, verify, gc, retention, devices (no IO: `cli.parser` builds them)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _target_argument(p: argparse.ArgumentParser, required: bool) -> None:
    help_ = "a file or folder in the root (a path as on disk, there or not)"
    if required:
        p.add_argument("path", type=Path, metavar="PATH", help=help_)
    else:
        p.add_argument(
            "path", type=Path, nargs="?", default=None, metavar="PATH",
            help=help_ + " (default: the current folder)",
        )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _device_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--device", metavar="ID", help=f"this device's history only (default: {default})"
    )


def _at_option(p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    p.add_argument(
        "--at", metavar="TIME",
        help="a past time: 2h, 3d, 2w ago, or 2026-05-22T18:05 (local time unless zoned)",
    )  # fmt: skip


def ls_arguments(p: argparse.ArgumentParser) -> None:
    _target_argument(p, required=False)
    _device_option(p, "this device")
    _at_option(p)


def versions_arguments(p: argparse.ArgumentParser) -> None:
    _target_argument(p, required=True)
    _device_option(p, "every device")


def restore_arguments(p: argparse.ArgumentParser) -> None:
    _target_argument(p, required=True)
    which = p.add_mutually_exclusive_group()
    _at_option(which)
    which.add_argument(
        "--version", metavar="SHA", help="the version whose sha256 starts with SHA (see versions)"
    )
    _device_option(p, "the newest of any device")
    p.add_argument(
        "--to", type=Path, metavar="DIR",
        help="write into DIR instead of the root (the root is not touched)",
    )  # fmt: skip


def _root_option(p: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:  # `dropbeard gc ~/Sync`, as `dropbeard sync ~/Sync`
        p.add_argument(
            "root_dir", type=Path, nargs="?", default=None, metavar="ROOT",
            help="the root (or --root DIR; default: the one you are in)",
        )  # fmt: skip
    p.add_argument(
        "--root", type=Path, metavar="DIR", help="the root (default: the one you are in)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def chosen_root(args: argparse.Namespace) -> Path | None:
    """The root a command names, as ROOT or --root (None: the one you are in); naming two
    different ones is a usage error (ValueError, its message for the user)."""
    given: Path | None = getattr(args, "root_dir", None)
    if given is not None and args.root is not None and given != args.root:
        raise ValueError(f"two roots given: {given} and --root {args.root}")
    return given if given is not None else args.root


def verify_arguments(p: argparse.ArgumentParser) -> None:
    _root_option(p, positional=True)
    p.add_argument(
        "--all", action="store_true", help="every snapshot in the bucket, not only the heads"
    )
    depth = p.add_mutually_exclusive_group()
    depth.add_argument(
        "--full", action="store_true", help="read back and re-hash every node and blob"
    )
    depth.add_argument(
        "--sample", type=float, metavar="PCT", help="re-hash a random PCT%% of the blobs"
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="check this device's head and upload again, from this device's disk, what it "
        "references that is missing (what the daemon does daily)",
    )


def gc_arguments(p: argparse.ArgumentParser) -> None:
    _root_option(p, positional=True)
    p.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")


def retention_arguments(p: argparse.ArgumentParser) -> None:
    _root_option(p, positional=True)
    for rule, what in (
        ("all", "keep every snapshot younger than D"),
        ("hourly", "keep the newest of each hour younger than D"),
        ("daily", "keep the newest of each day younger than D"),
        ("weekly", "keep the newest of each ISO week younger than D"),
        ("grace", "delete unreached objects only once older than D (under 1h: tests only)"),
    ):
        p.add_argument(f"--{rule}", metavar="D", help=f"{what} (e.g. 48h, 7d, 2y; 0: none)")


def devices_arguments(p: argparse.ArgumentParser) -> None:
    _root_option(p)
    p.add_argument(
        "action", nargs="?", choices=("retire",), help="retire: stop waiting for device ID"
    )
    p.add_argument("device", nargs="?", metavar="ID", help="the device to retire")
