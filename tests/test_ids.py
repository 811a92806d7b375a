"""Root and device ids (SPEC 1)."""

from __future__ import annotations

import pytest

from dropbeard.core.ids import validate_id


@pytest.mark.parametrize("value", ["a", "laptop", "old-phone", "0", "a.b_c-d", "x" * 64])
def test_valid_ids(value: str) -> None:
    assert validate_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "Laptop", "-a", ".a", "_a", "a b", "a/b", "x" * 65, "é", "a\n"]
)
def test_invalid_ids(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid id"):
        validate_id(value)
