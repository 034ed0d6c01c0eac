"""Argument checks shared by the Django-free active-learning modules."""

from __future__ import annotations

import numbers


def check_int(value: object, *, name: str, minimum: int, error: type[ValueError]) -> int:
    """Return ``value`` as int; raise ``error`` for bools, non-integers and values < ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise error(f"{name} must be >= {minimum}, got {value}")
    return int(value)
