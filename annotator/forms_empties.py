"""Forms of the empties check, the box page and the admins' count corrections."""

from __future__ import annotations

from django import forms

from activelearn.services.empties import MAX_SAMPLE
from annotator.forms import FloatField, IdField, IntegerField

YES, NO, SKIP = "yes", "no", "skip"


class EmptyAnswerForm(forms.Form):
    check_id = IdField(widget=forms.HiddenInput)
    answer = forms.ChoiceField(choices=[(YES, "An animal"), (NO, "No animal"), (SKIP, "Skip")])


class SampleForm(forms.Form):
    size = IntegerField(min_value=1, max_value=MAX_SAMPLE, initial=50)


class BoxForm(forms.Form):
    """A box in fractions of the upright image: top-left x, y, width, height, each in [0, 1]
    (ASCII decimals only; NaN and infinities are refused; the service checks the rest)."""

    x = FloatField(min_value=0.0, max_value=1.0)
    y = FloatField(min_value=0.0, max_value=1.0)
    w = FloatField(min_value=0.0, max_value=1.0)
    h = FloatField(min_value=0.0, max_value=1.0)
    # The box this one redraws (it is then dropped); empty for a new animal.
    replaces = IdField(required=False)


class CountForm(forms.Form):
    species_id = IdField()
    count = IntegerField(min_value=0, max_value=10_000)
