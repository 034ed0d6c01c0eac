"""Forms validate every request body before a service sees it."""

from __future__ import annotations

from typing import Any

from django import forms

from activelearn.models import LabelKind, Strategy
from projects.models import ClassBalance, CropShape, Project, Role, Species

SKIP = "skip"


# The round-start form's "let the project's rule choose" option (``round_strategy_choice``).
AUTO_STRATEGY = "auto"


class RoundStartForm(forms.Form):
    """A round's strategy and size; the "species" strategy also takes the target species
    (one of ``project``'s: any other id is refused as an invalid choice). The strategy "auto"
    cleans to None: ``round_start`` then applies the default rule and records its reason."""

    strategy = forms.ChoiceField(
        choices=[(AUTO_STRATEGY, "Automatic (the default rule)"), *Strategy.choices],
        initial=AUTO_STRATEGY,
    )
    size = forms.IntegerField(min_value=1, max_value=100_000, initial=100)
    target_species = forms.ModelChoiceField(
        queryset=Species.objects.none(),
        required=False,
        empty_label="(species for a species round)",
        help_text="For the species strategy: crops the classifier predicts as this species.",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["target_species"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Species.objects.filter(project=project)

    def clean_strategy(self) -> str | None:
        value: str = self.cleaned_data["strategy"]
        return None if value == AUTO_STRATEGY else value


# A first round has no classifier yet, so only the strategies that need none.
_FIRST_ROUND_CHOICES = [
    (s.value, s.label) for s in (Strategy.RANDOM, Strategy.TYPICAL, Strategy.K_CENTER)
]


class LearningSettingsForm(forms.Form):
    """The first round's strategy and the target accuracy, entered in percent."""

    first_round_strategy = forms.ChoiceField(choices=_FIRST_ROUND_CHOICES)
    target_accuracy = forms.FloatField(
        min_value=50.0,
        max_value=100.0,
        help_text="Machine labels at or above the confidence that reaches this accuracy in "
        "cross-validation are auto-accepted.",
    )

    # Left out of a request: unchanged (the page always sends them).
    seconds_per_image = forms.FloatField(
        required=False,
        max_value=3600.0,
        help_text="Volunteer time per image, for the effort-saved estimate (more than 0, at "
        "most 3600).",
    )
    class_balance = forms.ChoiceField(
        choices=ClassBalance.choices,
        required=False,
        help_text="How the next retrain treats rare species.",
    )
    ensemble_size = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=10,
        help_text="Average the probabilities of this many classifiers (1: a single model).",
    )

    audit_share = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=50.0,
        help_text="Share of every round (%) drawn at random and shown without suggestions: "
        "the labels that measure the machine without bias (0 to 50).",
    )

    def clean_target_accuracy(self) -> float:
        return float(self.cleaned_data["target_accuracy"]) / 100.0

    def clean_audit_share(self) -> float | None:
        value = self.cleaned_data["audit_share"]
        return None if value is None else float(value) / 100.0

    def clean_seconds_per_image(self) -> float | None:
        value = self.cleaned_data["seconds_per_image"]
        if value is not None and not value > 0:
            raise forms.ValidationError("seconds per image must be more than 0")
        return value

    def clean_class_balance(self) -> str | None:
        return self.cleaned_data["class_balance"] or None


class CropIdsField(forms.Field):
    """Several crop ids (or other ``noun`` ids) posted under one name (checkboxes); at most
    ``max_count``."""

    widget = forms.MultipleHiddenInput

    def __init__(self, *, max_count: int = 100, noun: str = "crop", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_count = max_count
        self.noun = noun

    def to_python(self, value: Any) -> list[int]:
        values = value if isinstance(value, list | tuple) else ([value] if value else [])
        if not all(str(v).isdigit() and int(v) > 0 for v in values):
            raise forms.ValidationError(f"{self.noun} ids must be positive integers")
        if len(values) > self.max_count:
            raise forms.ValidationError(f"at most {self.max_count} {self.noun}s at once")
        return [int(v) for v in values]

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise forms.ValidationError(f"select at least one {self.noun}")


class LabelForm(forms.Form):
    """``choice`` is ``species:<id>``, ``not_animal``, ``unknown`` or ``skip``."""

    crop_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    choice = forms.CharField(max_length=50)
    # One per rendered page: a double click or a resent form stores one label.
    idempotency_key = forms.CharField(max_length=200, required=False)
    # The ticked attribute checkboxes; ``attributes_shown`` says the page showed them, so that
    # none ticked means "all no" rather than "not recorded".
    attributes = CropIdsField(max_count=50, noun="attribute", required=False)
    attributes_shown = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        choice = data.get("choice", "")
        if choice == SKIP:
            data["kind"], data["species_id"] = SKIP, None
        elif choice:
            data["kind"], data["species_id"] = _choice_parse(choice)
        _attributes_clean(data)
        return data


def _attributes_clean(data: dict[str, Any]) -> None:
    """``data["attributes"]``: the ticked ids for a species label when the page showed the
    attributes (or any was ticked), else None; other kinds have no behaviour to record."""
    ticked = data.get("attributes") or []
    recorded = data.get("kind") == LabelKind.SPECIES and (data.get("attributes_shown") or ticked)
    data["attributes"] = list(ticked) if recorded else None


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
    # Optional so that a form without it (an older page, a script) keeps the project's shape.
    crop_shape = forms.ChoiceField(choices=CropShape.choices, required=False)

    def clean_crop_shape(self) -> str | None:
        return self.cleaned_data.get("crop_shape") or None


def _choice_parse(choice: str) -> tuple[str, int | None]:
    """``species:<id>``, ``not_animal`` or ``unknown`` as (kind, species id)."""
    if choice in (LabelKind.NOT_ANIMAL, LabelKind.UNKNOWN):
        return choice, None
    if choice.startswith("species:") and choice.removeprefix("species:").isdigit():
        return LabelKind.SPECIES, int(choice.removeprefix("species:"))
    raise forms.ValidationError(f"unknown choice {choice!r}")


class GridLabelForm(forms.Form):
    """Grid mode: one label for the selected crops."""

    crop_ids = CropIdsField(max_count=25)
    choice = forms.CharField(max_length=50)
    idempotency_key = forms.CharField(max_length=200, required=False)
    attributes = CropIdsField(max_count=50, noun="attribute", required=False)
    attributes_shown = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "choice" in data:
            data["kind"], data["species_id"] = _choice_parse(data["choice"])
        _attributes_clean(data)
        return data


class ReviewForm(forms.Form):
    """An admin's decision on a disputed crop."""

    crop_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    choice = forms.CharField(max_length=50)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "choice" in data:
            data["kind"], data["species_id"] = _choice_parse(data["choice"])
        return data


class MemberAddForm(forms.Form):
    """An existing user, by username, and the role to give them."""

    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VOLUNTEER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class SpeciesNameForm(forms.Form):
    """A species' (new) name; uniqueness within the project is the service's to check."""

    name = forms.CharField(max_length=200)


class AttributeForm(forms.Form):
    """An attribute's name and labelling hotkey (the service checks they are free)."""

    name = forms.CharField(max_length=100)
    key = forms.CharField(max_length=1, help_text="One letter or digit, e.g. q.")


class SpeciesMergeForm(forms.Form):
    """Merge ``source`` into ``target`` (species ids; the service checks they are the
    project's)."""

    source = forms.IntegerField(min_value=1)
    target = forms.IntegerField(min_value=1)


class ConsensusSettingsForm(forms.Form):
    """Votes per crop and the agreement threshold, entered in percent."""

    votes_per_crop = forms.IntegerField(min_value=1, max_value=10)
    agreement_threshold = forms.FloatField(
        min_value=0.0,
        max_value=100.0,
        help_text="A crop is done when the most common answer has at least this share of its "
        "votes (and no tie); otherwise an admin reviews it.",
    )

    def clean_agreement_threshold(self) -> float:
        return float(self.cleaned_data["agreement_threshold"]) / 100.0
