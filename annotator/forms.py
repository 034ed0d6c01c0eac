"""Forms validate every request body before a service sees it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core import signing

from activelearn.models import LabelKind, RoundUnit, Strategy
from activelearn.services.labels import SECONDS_MAX, SUGGESTIONS_MAX
from annotator.numbers import MAX_ID, ascii_float_text, ascii_int_parse, id_parse
from projects.invitations import INVITATION_DAYS_MAX, INVITATION_USES_MAX
from projects.models import ClassBalance, CropShape, Project, Role, Species, TaxonRank

SKIP = "skip"


class IntegerField(forms.IntegerField):
    """Django's IntegerField, but ASCII digits only ("١٢" and "1_0" are refused, not 12 and 10)
    and never beyond ``MAX_ID`` (nothing this app stores is larger)."""

    def __init__(self, *, max_value: int = MAX_ID, **kwargs: Any) -> None:
        super().__init__(max_value=max_value, **kwargs)

    def to_python(self, value: Any) -> int | None:
        # "12.0" stays 12, as in Django.
        text = self.re_decimal.sub("", value) if isinstance(value, str) else ""
        if text.strip() and ascii_int_parse(text) is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class IdField(IntegerField):
    """A database id: 1 to ``MAX_ID``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, **kwargs)


class FloatField(forms.FloatField):
    """Django's FloatField, but plain ASCII decimals only ("٩٠" is refused, not 90.0)."""

    # django-stubs derives FloatField from IntegerField, hence the override ignore.
    def to_python(self, value: Any) -> float | None:  # type: ignore[override]
        if isinstance(value, str) and value.strip() and not ascii_float_text(value):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class SpeciesChoiceField(forms.ModelChoiceField):
    """One of the queryset's species by id; a value that is no id (non-ASCII digits, beyond
    ``MAX_ID``) is an invalid choice without a query."""

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return None
        if not isinstance(value, Species) and id_parse(value) is None:
            raise forms.ValidationError(
                self.error_messages["invalid_choice"], code="invalid_choice"
            )
        return super().to_python(value)


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
    size = IntegerField(min_value=1, max_value=100_000, initial=100)
    target_species = SpeciesChoiceField(
        queryset=Species.objects.none(),
        required=False,
        empty_label="(species for a species round)",
        help_text="For the species strategy: crops the classifier predicts as this species.",
    )
    # Crops one at a time, or whole capture events (one answer each; k-Center over events).
    unit = forms.ChoiceField(choices=RoundUnit.choices, initial=RoundUnit.CROP, required=False)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["target_species"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Species.objects.filter(project=project)

    def clean_strategy(self) -> str | None:
        value: str = self.cleaned_data["strategy"]
        return None if value == AUTO_STRATEGY else value

    def clean_unit(self) -> str:
        return str(self.cleaned_data["unit"] or RoundUnit.CROP)


# A first round has no classifier yet, so only the strategies that need none.
_FIRST_ROUND_CHOICES = [
    (s.value, s.label) for s in (Strategy.RANDOM, Strategy.TYPICAL, Strategy.K_CENTER)
]


class LearningSettingsForm(forms.Form):
    """The first round's strategy and the target accuracy, entered in percent."""

    first_round_strategy = forms.ChoiceField(choices=_FIRST_ROUND_CHOICES)
    target_accuracy = FloatField(
        min_value=50.0,
        max_value=100.0,
        help_text="Machine labels at or above the confidence that reaches this accuracy in "
        "cross-validation are auto-accepted.",
    )

    # Left out of a request: unchanged (the page always sends them).
    seconds_per_image = FloatField(
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
    ensemble_size = IntegerField(
        required=False,
        min_value=1,
        max_value=10,
        help_text="Average the probabilities of this many classifiers (1: a single model).",
    )

    audit_share = FloatField(
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
        if len(values) > self.max_count:
            raise forms.ValidationError(f"at most {self.max_count} {self.noun}s at once")
        ids = [id_parse(v) for v in values]
        if None in ids:
            raise forms.ValidationError(
                f"{self.noun} ids must be positive integers (ASCII digits, at most {MAX_ID})"
            )
        return [i for i in ids if i is not None]

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise forms.ValidationError(f"select at least one {self.noun}")


# The label page's suggestion list is signed by the server that rendered it, so the anchoring
# figures count only what the server offered (not what a page says it showed).
_SUGGESTIONS_SALT = "trapwise.label.suggestions"


def suggestions_sign(*, crop_id: int, species_ids: list[int]) -> str:
    """The ``suggestions`` value of the label page showing ``species_ids`` on ``crop_id``."""
    return signing.dumps([crop_id, species_ids], salt=_SUGGESTIONS_SALT)


def _suggestions_unsign(value: str, *, crop_id: int) -> list[int]:
    try:
        signed_crop, ids = signing.loads(value, salt=_SUGGESTIONS_SALT)
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise forms.ValidationError("the suggestions are not the ones this server showed") from exc
    if signed_crop != crop_id:
        raise forms.ValidationError("the suggestions were shown with another crop")
    return [int(i) for i in ids]


def _seconds_field() -> FloatField:
    return FloatField(
        required=False,
        min_value=0.0,
        max_value=SECONDS_MAX,
        help_text="Seconds from showing the crop to the answer (the page measures them).",
    )


class LabelForm(forms.Form):
    """``choice`` is ``species:<id>``, ``not_animal``, ``unknown`` or ``skip``.

    What the page showed (each optional): ``suggestions``, the signed list the page rendered
    (``suggestions_sign``), ``suggestion_rank``, the 1-based place of the suggestion button
    used, ``seconds``, measured by label.js.
    """

    crop_id = IdField(widget=forms.HiddenInput)
    choice = forms.CharField(max_length=50)
    # One per rendered page: a double click or a resent form stores one label.
    idempotency_key = forms.CharField(max_length=200, required=False)
    # The ticked attribute checkboxes; ``attributes_shown`` says the page showed them, so that
    # none ticked means "all no" rather than "not recorded".
    attributes = CropIdsField(max_count=50, noun="attribute", required=False)
    attributes_shown = forms.BooleanField(required=False)
    suggestions = forms.CharField(max_length=2000, required=False)
    suggestion_rank = IntegerField(required=False, min_value=1, max_value=SUGGESTIONS_MAX)
    seconds = _seconds_field()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        signed = data.get("suggestions") or ""
        data["suggestions"] = None
        if signed and "crop_id" in data:
            data["suggestions"] = _suggestions_unsign(signed, crop_id=data["crop_id"])
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
    detection_threshold = FloatField(min_value=0.0, max_value=1.0)
    min_box_pixels = IntegerField(min_value=0, max_value=10_000)
    crop_padding = FloatField(min_value=0.0, max_value=1.0)
    # Optional so that a form without it (an older page, a script) keeps the project's shape.
    crop_shape = forms.ChoiceField(choices=CropShape.choices, required=False)

    def clean_crop_shape(self) -> str | None:
        return self.cleaned_data.get("crop_shape") or None


def _choice_parse(choice: str) -> tuple[str, int | None]:
    """``species:<id>``, ``not_animal`` or ``unknown`` as (kind, species id)."""
    if choice in (LabelKind.NOT_ANIMAL, LabelKind.UNKNOWN):
        return choice, None
    species_id = id_parse(choice.removeprefix("species:"))
    if choice.startswith("species:") and species_id is not None:
        return LabelKind.SPECIES, species_id
    raise forms.ValidationError(f"unknown choice {choice!r}")


class GridLabelForm(forms.Form):
    """Grid mode: one label for the selected crops."""

    crop_ids = CropIdsField(max_count=25)
    choice = forms.CharField(max_length=50)
    idempotency_key = forms.CharField(max_length=200, required=False)
    attributes = CropIdsField(max_count=50, noun="attribute", required=False)
    attributes_shown = forms.BooleanField(required=False)
    # The page's time from showing the grid to this answer (grid.js), shared among the crops.
    seconds = _seconds_field()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "choice" in data:
            data["kind"], data["species_id"] = _choice_parse(data["choice"])
        _attributes_clean(data)
        return data


class ReviewForm(forms.Form):
    """An admin's decision on a disputed crop."""

    crop_id = IdField(widget=forms.HiddenInput)
    choice = forms.CharField(max_length=50)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "choice" in data:
            data["kind"], data["species_id"] = _choice_parse(data["choice"])
        return data


class InvitationForm(forms.Form):
    """An invitation's role, lifetime and number of uses (the service checks the bounds too)."""

    role = forms.ChoiceField(choices=Role.choices, initial=Role.VOLUNTEER)
    days = forms.IntegerField(
        min_value=1, max_value=INVITATION_DAYS_MAX, initial=7, label="Expires after (days)"
    )
    max_uses = forms.IntegerField(
        min_value=1,
        max_value=INVITATION_USES_MAX,
        initial=1,
        label="Uses",
        help_text="1: one person; more for a volunteer drive.",
    )


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class SpeciesNameForm(forms.Form):
    """A species' (new) name; uniqueness within the project is the service's to check."""

    name = forms.CharField(max_length=200)


class SpeciesTaxonomyForm(forms.Form):
    """A species' scientific name, further common names (``;`` between them), rank and
    parent (a species id; the service checks it is the project's and ranks above)."""

    scientific_name = forms.CharField(max_length=200, required=False)
    common_names = forms.CharField(max_length=2000, required=False)
    rank = forms.ChoiceField(choices=TaxonRank.choices)
    parent = IdField(required=False)


class SpeciesCsvForm(forms.Form):
    """A species CSV upload (``projects.taxonomy``); its size and text are the service's to
    check."""

    file = forms.FileField()


class AttributeForm(forms.Form):
    """An attribute's name and labelling hotkey (the service checks they are free)."""

    name = forms.CharField(max_length=100)
    key = forms.CharField(max_length=1, help_text="One letter or digit, e.g. q.")


class SpeciesMergeForm(forms.Form):
    """Merge ``source`` into ``target`` (species ids; the service checks they are the
    project's)."""

    source = IdField()
    target = IdField()


class ConsensusSettingsForm(forms.Form):
    """Votes per crop and the agreement threshold, entered in percent."""

    votes_per_crop = IntegerField(min_value=1, max_value=10)
    agreement_threshold = FloatField(
        min_value=0.0,
        max_value=100.0,
        help_text="A crop is done when the most common answer has at least this share of its "
        "votes (and no tie); otherwise an admin reviews it.",
    )

    def clean_agreement_threshold(self) -> float:
        return float(self.cleaned_data["agreement_threshold"]) / 100.0


class FieldGuideForm(forms.Form):
    """The field guide's species (one of ``project``'s; left out: none chosen yet)."""

    species = SpeciesChoiceField(
        queryset=Species.objects.none(), required=False, empty_label="(choose a species)"
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["species"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Species.objects.filter(project=project)
