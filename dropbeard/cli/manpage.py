"""The man page, dropbeard(1), generated from the parser so it never drifts from `--help`
(pure text; `python -m dropbeard.cli.manpage` rewrites the copy shipped in the package,
and a test fails when that copy is stale).

Deterministic: no date, no terminal width.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dropbeard import __version__
from dropbeard.cli.parser import COMMANDS, DESCRIPTION, EXIT_CODES, build_parser

#: Where the package ships the page (package data), relative to this file.
SHIPPED = Path(__file__).resolve().parent.parent / "man" / "dropbeard.1"

_EVERYWHERE = ("help", "verbose", "quiet")

_ENVIRONMENT = (
    (
        "DROPBEAR_S3_ACCESS_KEY_ID, DROPBEAR_S3_SECRET_ACCESS_KEY, DROPBEAR_S3_SESSION_TOKEN",
        "S3 credentials; they take precedence over the standard AWS chain (AWS_* variables, "
        "~/.aws/credentials, --profile). dropbeard never writes them to disk.",
    ),
    ("NO_COLOR", "when set, nothing is coloured."),
    ("XDG_CACHE_HOME", "where S3 request shapes are cached (dropbeard/s3/; default ~/.cache)."),
    ("XDG_CONFIG_HOME", "where the daemon config is looked for (dropbeard/config.toml)."),
    ("XDG_RUNTIME_DIR", "where the daemon's control socket lives by default."),
)

_FILES = (
    ("ROOT/.dropbear/root.toml", "the root's identity (root id, device id, mode) and remote."),
    ("ROOT/.dropbear/state.sqlite", "the local index: what this device last agreed on."),
    ("ROOT/.dropbearignore", "gitignore-style patterns of paths that stay local (synced)."),
    (
        "ROOT/.../.dropbear-part-*",
        "a download in progress, beside the file it becomes: never synced; one a crash "
        "left behind is removed by the next pass.",
    ),
    ("~/.config/dropbeard/config.toml", "the daemon's roots and settings."),
    (
        "~/.cache/dropbeard/s3/*.json",
        "how botocore builds each kind of S3 request to an endpoint given with keys, kept "
        "so the next command sends them without loading botocore; no credentials. Safe to "
        "delete.",
    ),
)


def _roff(text: str) -> str:
    """`text` escaped for roff: backslashes, hyphens, and a leading dot or quote."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + out if out.startswith((".", "'")) else out


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=10_000)
    formatter.add_usage(
        parser.usage,
        parser._actions,  # argparse has no public accessor for these
        parser._mutually_exclusive_groups,
        prefix="",
    )
    return formatter.format_help().strip()


def _argument(action: argparse.Action) -> list[str]:
    if action.option_strings:
        metavar = "" if action.nargs == 0 else f" \\fI{_roff(_metavar(action))}\\fR"
        names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings)
        head = names + metavar
    else:
        head = f"\\fI{_roff(_metavar(action))}\\fR"
    return [".TP", head, _roff(action.help or "")]


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render_manpage() -> str:
    """dropbeard(1) as roff."""
    parser = build_parser()
    lines = [
        f'.TH DROPBEARD 1 "" "dropbeard {__version__}" "User Commands"',
        ".nh",  # options must not be hyphenated
        ".ad l",
        ".SH NAME",
        f"dropbeard \\- {_roff(DESCRIPTION[0].lower() + DESCRIPTION[1:].rstrip('.'))}",
        ".SH SYNOPSIS",
        _roff(_usage(parser)),
        ".SH DESCRIPTION",
        _roff(
            "dropbeard keeps one folder in sync across one person's devices through an "
            "object store they own: an S3 bucket or a plain directory (a NAS mount, a USB "
            "drive). Devices never talk to each other. Deletes travel only as explicit "
            "tombstones, concurrent edits become conflict copies, and a file is only ever "
            "replaced by bytes that verified against their SHA-256."
        ),
        ".SH OPTIONS",
    ]
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            lines += _argument(action)
    lines.append(".SH COMMANDS")
    for name, sub in _subparsers(parser).items():
        description, examples = COMMANDS[name]
        lines += [f'.SS "{_roff(name)}"', _roff(description + "."), ".PP", _roff(_usage(sub))]
        for action in sub._actions:
            if action.dest not in _EVERYWHERE:  # -h, -v and -q: under OPTIONS
                lines += _argument(action)
        lines += [".PP", "Examples:", ".RS"]
        for command, what in examples:
            lines += [".PP", ".nf", _roff(command), ".fi", _roff(what)]
        lines.append(".RE")
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_CODES:
        lines += [".TP", str(code), _roff(meaning)]
    for title, entries in (("ENVIRONMENT", _ENVIRONMENT), ("FILES", _FILES)):
        lines.append(f".SH {title}")
        for name, text in entries:
            lines += [".TP", f"\\fB{_roff(name)}\\fR", _roff(text)]
    lines += [
        ".SH SEE ALSO",
        _roff("The bucket format: docs/FORMAT.md in the source distribution."),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    SHIPPED.parent.mkdir(exist_ok=True)
    SHIPPED.write_text(render_manpage(), encoding="utf-8")
    print(f"wrote {SHIPPED}", file=sys.stderr)
