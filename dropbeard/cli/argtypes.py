"""The value types of command-line options: each turns the text a person typed into the
value, or raises `argparse.ArgumentTypeError` with the one line argparse prints."""

from __future__ import annotations

import argparse

from dropbeard.core.bandwidth import parse_bandwidth
from dropbeard.core.daemonconfig import MAX_CONCURRENCY


def concurrency(text: str) -> int:
    """Requests in flight: a whole number, 1 to the maximum."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_CONCURRENCY}, got {value}")
    return value


def bandwidth(text: str) -> int:
    """Bytes per second; 0 for `off` (so that it can override a config's limit)."""
    try:
        return parse_bandwidth(text) or 0
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> float:
    """Seconds from a duration such as `30s` or `2m`; more than zero."""
    from dropbeard.core.duration import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0s")
    return seconds
