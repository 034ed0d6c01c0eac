"""The event label page's form: one answer for the crops of a capture event."""

from __future__ import annotations

from typing import Any

from django import forms

from annotator.forms import SKIP, CropIdsField, _attributes_clean, _choice_parse

# "These differ": the event's crops are labelled one by one instead.
DIFFER = "differ"
# Crops of one event answered at once; a burst rarely holds more.
EVENT_CROPS_MAX = 200


class EventLabelForm(forms.Form):
    """``crop_ids``: the event's crops the page showed; ``choice`` is ``species:<id>``,
    ``not_animal``, ``unknown``, ``skip`` or ``differ``."""

    crop_ids = CropIdsField(max_count=EVENT_CROPS_MAX)
    choice = forms.CharField(max_length=50)
    idempotency_key = forms.CharField(max_length=200, required=False)
    attributes = CropIdsField(max_count=50, noun="attribute", required=False)
    attributes_shown = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        choice = data.get("choice", "")
        if choice in (SKIP, DIFFER):
            data["kind"], data["species_id"] = choice, None
        elif choice:
            data["kind"], data["species_id"] = _choice_parse(choice)
        _attributes_clean(data)
        return data
