"""The exceptions the active-learning services raise to refuse a request.

Each is a ValueError whose message says why, meant for the person who asked (the views show it
as is); a service that raises one has changed nothing. They live here, not beside one service,
because several modules raise the same one (a retrain request refused for want of labels is a
LabelError, as a refused vote is).
"""

from __future__ import annotations

__all__ = ["FinetuneError", "LabelError", "RoundError", "SettingsError"]


class RoundError(ValueError):
    """A round cannot start; the message says why. Nothing was changed."""


class LabelError(ValueError):
    """A label was refused; the message says why. Nothing was changed."""


class FinetuneError(ValueError):
    """A fine-tuning run cannot start; the message says why. Nothing was changed."""


class SettingsError(ValueError):
    """Settings were refused; the message says why. Nothing was changed."""
