"""Numbers from requests, parsed strictly: ASCII digits only, ids within what the database stores.

Python's ``int()`` and ``float()`` take any Unicode digit ("١٢" is 12) and underscores, and
``str.isdigit()`` is true for "²", which ``int()`` then refuses: a request could smuggle a
number past a check, or crash the view. An id above ``MAX_ID`` cannot be stored (bigint), and
PostgreSQL and SQLite raise on it rather than find nothing.
"""

from __future__ import annotations

import re

from django.urls.converters import IntConverter

# The largest id the databases store (a signed 64-bit bigint).
MAX_ID = 2**63 - 1
# The most crop ids a volunteer's skip list holds: one GET .../next of the API (its query string
# holds at most DATA_UPLOAD_MAX_NUMBER_FIELDS parameters in all) and the labelling page's
# session list of a round both keep at most this many.
SKIP_MAX = 500

_INT = re.compile(r"[+-]?[0-9]+")
_ID = re.compile(r"[0-9]{1,19}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def ascii_int_parse(text: str) -> int | None:
    """``text`` (surrounding spaces allowed) as an int when it is ASCII digits with an optional
    sign, else None."""
    text = text.strip()
    return int(text) if _INT.fullmatch(text) else None


def ascii_float_text(text: str) -> bool:
    """Whether ``text`` (surrounding spaces allowed) is a plain ASCII decimal number."""
    return _FLOAT.fullmatch(text.strip()) is not None


def id_parse(value: object) -> int | None:
    """``value`` (an int, or its ASCII digits with no sign) as an id, 1 to ``MAX_ID``; None for
    anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not _ID.fullmatch(text):
            return None
        number = int(text)
    return number if 1 <= number <= MAX_ID else None


class IdConverter(IntConverter):
    """``<id:name>`` in a URL: 1 to ``MAX_ID``, ASCII digits; anything else does not match (404).

    Django's ``<int:...>`` takes any length, and a 20-digit id then reaches the database.
    """

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = id_parse(value)
        if number is None:
            raise ValueError(f"not an id: {value!r}")
        return number
