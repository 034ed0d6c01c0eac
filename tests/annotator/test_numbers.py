"""Strict number parsing: ASCII digits only, ids within a bigint."""

from __future__ import annotations

import pytest

from annotator.numbers import MAX_ID, IdConverter, ascii_float_text, ascii_int_parse, id_parse


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1),
        (" 42 ", 42),
        (str(MAX_ID), MAX_ID),
        (7, 7),
        (str(MAX_ID + 1), None),
        (MAX_ID + 1, None),
        ("0", None),
        (0, None),
        ("-1", None),
        ("+1", None),
        ("١٢", None),
        ("²", None),
        ("1_0", None),
        ("1.0", None),
        ("", None),
        (True, None),
        (None, None),
    ],
)
def test_id_parse(value: object, expected: int | None) -> None:
    assert id_parse(value) == expected


def test_ascii_int_and_float() -> None:
    assert ascii_int_parse(" -12 ") == -12
    assert ascii_int_parse("١٢") is None and ascii_int_parse("1_000") is None
    assert all(ascii_float_text(t) for t in ["1", "-1.5", ".5", "1e3", " 2. "])
    assert not any(ascii_float_text(t) for t in ["٩٠", "1_0", "nan", "inf", "", "1e"])


def test_id_converter_refuses_what_is_no_id() -> None:
    converter = IdConverter()
    assert converter.to_python("12") == 12
    for bad in [str(MAX_ID + 1), "0"]:
        with pytest.raises(ValueError):
            converter.to_python(bad)
