"""Reading one table of a TOML config file, every problem a one-line `UsageError` naming
the file and the key (pure: the caller passes the text)."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Sequence
from typing import Any, TypeVar

from dropbeard.core.bandwidth import parse_bandwidth
from dropbeard.core.duration import parse_duration
from dropbeard.core.errors import UsageError

#: A `Literal` of words, such as `Mode`: what `ConfigTable.choice` returns.
_Word = TypeVar("_Word", bound=str)


def shown(value: str) -> str:
    """`value` quoted for a one-line message: shortened, control characters escaped."""
    if len(value) > 60:
        value = value[:57] + "..."
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in value) + "'"


def described(value: object) -> str:
    """What a config value is, for "expected …, got <this>"."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{shown(value)} (a string)"
    if isinstance(value, int | float):
        return f"{value} (a number)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{value} (a date/time)"


class ConfigTable:
    """One TOML table being read; knows where it is so errors can name the key. Keys not
    in `keys` are refused on construction, with the closest known key suggested."""

    def __init__(
        self, data: dict[str, Any], *, source: str, where: str, header: str, keys: Sequence[str]
    ) -> None:
        self.data, self.source, self.where = data, source, where
        for key in data:
            if key not in keys:
                hint = difflib.get_close_matches(key, keys, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                raise _error(source, f"unknown key {shown(key)} in {header}{suggestion}")

    def error(self, key: str, problem: str) -> UsageError:
        return _error(self.source, f"{self.where}{key}: {problem}")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise _error(self.source, f"{self.where}{key}: missing (it is required)")
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {described(value)}")
        return value

    def choice(self, key: str, choices: tuple[_Word, ...], default: _Word) -> _Word:
        value = self.string(key)
        if value is None:
            return default
        for choice in choices:
            if value == choice:
                return choice
        raise self.error(key, f"must be one of {', '.join(choices)}, got {shown(value)}")

    def duration(self, key: str, *, zero_ok: bool) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"expected a duration like '30s', got {described(value)}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if seconds == 0 and not zero_ok:
            raise self.error(key, "must be more than 0s")
        return seconds

    def bandwidth(self, key: str) -> int | None:
        """Bytes per second (`dropbeard.core.bandwidth`); None if absent or `off`."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"expected a rate like '10M', got {described(value)}")
        try:
            return parse_bandwidth(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def count(self, key: str, low: int, high: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"expected a whole number {low}-{high}, got {described(value)}")
        return value

    def table(self, key: str, header: str, keys: Sequence[str]) -> ConfigTable:
        value = self.data.get(key)
        if value is None:
            raise _error(self.source, f"missing {header} table (it is required)")
        if not isinstance(value, dict):
            raise self.error(key, f"expected a {header} table, got {described(value)}")
        return ConfigTable(value, source=self.source, where=f"{key}.", header=header, keys=keys)


def _error(source: str, message: str) -> UsageError:
    return UsageError(f"config {source}: {message}")


def load_table(text: str, source: str, keys: Sequence[str]) -> ConfigTable:
    """The top-level table of TOML `text` read from `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _error(source, f"not valid TOML: {exc}") from None
    return ConfigTable(data, source=source, where="", header="top level", keys=keys)
