from __future__ import annotations

import pytest

from annotator.csvsafe import csv_safe, csv_safe_row


@pytest.mark.parametrize("text", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx"])
def test_formula_text_is_quoted(text: str) -> None:
    assert csv_safe(text) == "'" + text


def test_plain_values_pass() -> None:
    assert csv_safe_row(["red fox", 3, -0.5, "", None]) == ["red fox", 3, -0.5, "", None]
