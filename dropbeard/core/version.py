"""Version vectors: compare, merge and bump `{device_id: counter}` maps (pure).

A device missing from a vector counts as 0 (SPEC section 3). No function here mutates
its arguments; every result is a new dict.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

_V = TypeVar("_V")


class Order(enum.Enum):
    """How vector `a` relates to vector `b` in `compare(a, b)`."""

    EQUAL = "equal"
    DOMINATES = "dominates"  # a is causally after b
    DOMINATED = "dominated"  # a is causally before b
    CONCURRENT = "concurrent"  # neither saw the other

    def mirror(self) -> Order:
        """The order seen from the other side: `compare(b, a) == compare(a, b).mirror()`."""
        return _MIRROR[self]


_MIRROR = {
    Order.EQUAL: Order.EQUAL,
    Order.DOMINATES: Order.DOMINATED,
    Order.DOMINATED: Order.DOMINATES,
    Order.CONCURRENT: Order.CONCURRENT,
}


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> Order:
    """The causal order of `a` relative to `b`."""
    a_ahead = b_ahead = False
    for device in a.keys() | b.keys():
        x, y = a.get(device, 0), b.get(device, 0)
        if x > y:
            a_ahead = True
        elif y > x:
            b_ahead = True
        if a_ahead and b_ahead:
            return Order.CONCURRENT
    if a_ahead:
        return Order.DOMINATES
    if b_ahead:
        return Order.DOMINATED
    return Order.EQUAL


def dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True if every counter of `b` is <= the one in `a` and the vectors differ."""
    return compare(a, b) is Order.DOMINATES


def maximal(items: Sequence[_V], version: Callable[[_V], Mapping[str, int]]) -> list[_V]:
    """The `items` whose `version` no other item's dominates, in their order. Items with
    equal vectors stand or fall together, so each distinct vector is compared once: when
    every device holds the same version of a path (the usual case, however many devices),
    that costs no comparison at all instead of one per pair of devices."""
    distinct: list[Mapping[str, int]] = []
    for item in items:
        vector = version(item)
        if not any(vector == seen for seen in distinct):
            distinct.append(vector)
    if len(distinct) < 2:
        return list(items)
    top = [v for v in distinct if not any(dominates(o, v) for o in distinct)]
    return [item for item in items if any(version(item) == t for t in top)]


def merge(*vectors: Mapping[str, int]) -> dict[str, int]:
    """The element-wise maximum of `vectors` (`{}` for none): the least vector that
    dominates or equals each of them."""
    merged: dict[str, int] = {}
    for vector in vectors:
        for device, counter in vector.items():
            if counter > merged.get(device, 0):
                merged[device] = counter
            else:
                merged.setdefault(device, counter)
    return merged


def bump(vector: Mapping[str, int], device_id: str, counter: int) -> dict[str, int]:
    """A copy of `vector` with `device_id`'s counter set to `counter`, which must be greater
    than the current one (the device's counter is strictly increasing), so the result
    dominates `vector`."""
    current = vector.get(device_id, 0)
    if counter <= current:
        raise ValueError(
            f"counter {counter} for device {device_id!r} is not greater than {current}"
        )
    bumped = dict(vector)
    bumped[device_id] = counter
    return bumped
