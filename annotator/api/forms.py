"""Forms of the tokens page."""

from __future__ import annotations

from django import forms

from annotator.api.services import NAME_MAX_LENGTH


class ApiTokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX_LENGTH,
        strip=True,
        help_text="What uses it, e.g. 'field laptop script'.",
    )
