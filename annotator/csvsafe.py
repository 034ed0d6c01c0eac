"""Neutralise spreadsheet formulas in exported text (CSV injection).

For the CSV tables people open in a spreadsheet (crops, images, events) only: the Camtrap DP
package is read by programs and keeps every value verbatim (``annotator.camtrapdp``).
"""

from __future__ import annotations

from collections.abc import Iterable

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """Prefix text that a spreadsheet would run as a formula with a quote; numbers pass."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_safe_row(row: Iterable[object]) -> list[object]:
    return [csv_safe(v) for v in row]
