"""Forms validate every request body before a service sees it."""

from __future__ import annotations

from typing import Any

from django import forms

from activelearn.models import LabelKind, Strategy

SKIP = "skip"


class RoundStartForm(forms.Form):
    strategy = forms.ChoiceField(choices=Strategy.choices, initial=Strategy.K_CENTER)
    size = forms.IntegerField(min_value=1, max_value=100_000, initial=100)


# A first round has no classifier yet, so only the strategies that need none.
_FIRST_ROUND_CHOICES = [(s.value, s.label) for s in (Strategy.RANDOM, Strategy.K_CENTER)]


class LearningSettingsForm(forms.Form):
    """The first round's strategy and the target accuracy, entered in percent."""

    first_round_strategy = forms.ChoiceField(choices=_FIRST_ROUND_CHOICES)
    target_accuracy = forms.FloatField(
        min_value=50.0,
        max_value=100.0,
        help_text="Machine labels at or above the confidence that reaches this accuracy in "
        "cross-validation are auto-accepted.",
    )

    def clean_target_accuracy(self) -> float:
        return float(self.cleaned_data["target_accuracy"]) / 100.0


class LabelForm(forms.Form):
    """``choice`` is ``species:<id>``, ``not_animal``, ``unknown`` or ``skip``."""

    crop_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    choice = forms.CharField(max_length=50)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        choice = data.get("choice", "")
        data["species_id"] = None
        if choice in (LabelKind.NOT_ANIMAL, LabelKind.UNKNOWN, SKIP):
            data["kind"] = choice
        elif choice.startswith("species:") and choice.removeprefix("species:").isdigit():
            data["kind"] = LabelKind.SPECIES
            data["species_id"] = int(choice.removeprefix("species:"))
        else:
            raise forms.ValidationError(f"unknown choice {choice!r}")
        return data


class DetectionStartForm(forms.Form):
    detector = forms.ChoiceField(
        choices=[
            ("offline", "Offline (background model, no weights)"),
            ("megadetector", "MegaDetector (needs weights on the server)"),
        ],
        initial="offline",
    )


class ThresholdsForm(forms.Form):
    detection_threshold = forms.FloatField(min_value=0.0, max_value=1.0)
    min_box_pixels = forms.IntegerField(min_value=0, max_value=10_000)
    crop_padding = forms.FloatField(min_value=0.0, max_value=1.0)
