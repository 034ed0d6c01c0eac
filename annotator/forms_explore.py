"""Forms of the explore page: its filters (a GET query), bulk verification and undo."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import QueryDict

from activelearn.selectors_explore import SORTS, SOURCES, ExploreFilters
from activelearn.services.verify import ACTIONS, VERIFY_MAX
from annotator.forms import FloatField, IdField, IntegerField, SpeciesChoiceField
from annotator.numbers import id_parse
from projects.models import Project, Species
from projects.selectors_deployments import deployment_choices

YES_NO = [("", "Either"), ("yes", "Yes"), ("no", "No")]
SORT_LABELS = {
    "id": "Import order",
    "confidence": "Confidence, lowest first",
    "-confidence": "Confidence, highest first",
    "time": "Time taken, oldest first",
}
SOURCE_LABELS = {
    "human": "Human",
    "auto": "Auto-accepted",
    "machine": "Machine (unconfirmed)",
    "none": "No label",
}
# "Confirm every crop on this page": the shown crops, not the ticked ones.
CONFIRM_PAGE = "confirm_page"


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


class ExploreFilterForm(forms.Form):
    """The explore page's query string; ``filters()`` turns it into ``ExploreFilters``."""

    species = SpeciesChoiceField(
        queryset=Species.objects.none(), required=False, empty_label="Any species"
    )
    source = forms.MultipleChoiceField(
        choices=list(SOURCE_LABELS.items()),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Label source",
    )
    confidence_min = FloatField(min_value=0, max_value=1, required=False, label="Confidence from")
    confidence_max = FloatField(min_value=0, max_value=1, required=False, label="Confidence to")
    round = IntegerField(min_value=1, required=False, label="Round")
    camera = forms.CharField(max_length=300, required=False)
    folder = forms.CharField(max_length=1000, required=False)
    deployment = forms.ChoiceField(choices=[], required=False)
    date_from = forms.DateField(required=False, label="Taken from (YYYY-MM-DD)")
    date_to = forms.DateField(required=False, label="Taken until (YYYY-MM-DD)")
    no_time = forms.BooleanField(required=False, label="No capture time")
    event = forms.CharField(max_length=220, required=False, label="Capture event")
    empty = forms.ChoiceField(choices=YES_NO, required=False, label="Image called empty")
    in_review = forms.ChoiceField(choices=YES_NO, required=False, label="In review")
    sort = forms.ChoiceField(
        choices=[(s, SORT_LABELS[s]) for s in SORTS], required=False, label="Sort by"
    )
    cursor = forms.CharField(max_length=100, required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        species_field = self.fields["species"]
        assert isinstance(species_field, SpeciesChoiceField)
        species_field.queryset = Species.objects.filter(project=project)
        deployment_field = self.fields["deployment"]
        assert isinstance(deployment_field, forms.ChoiceField)
        deployment_field.choices = [("", "Any deployment"), *deployment_choices(project=project)]
        assert set(SOURCE_LABELS) == set(SOURCES)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("confidence_min"), data.get("confidence_max")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError("Confidence from must not be above confidence to.")
        start, end = data.get("date_from"), data.get("date_to")
        if start is not None and end is not None and start > end:
            raise forms.ValidationError("Taken from must not be after taken until.")
        return data

    def filters(self) -> ExploreFilters:
        data = self.cleaned_data
        species = data.get("species")
        return ExploreFilters(
            species_id=species.pk if species is not None else None,
            sources=list(data.get("source") or []),
            confidence_min=data.get("confidence_min"),
            confidence_max=data.get("confidence_max"),
            round_number=data.get("round"),
            camera=data.get("camera") or "",
            folder=data.get("folder") or "",
            deployment=data.get("deployment") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            event=data.get("event") or "",
            no_time=bool(data.get("no_time")),
            empty=_yes_no(data.get("empty") or ""),
            in_review=_yes_no(data.get("in_review") or ""),
        )

    def sort_order(self) -> str:
        return str(self.cleaned_data.get("sort") or "id")


class IdListField(forms.Field):
    """Several crop ids (repeated fields, e.g. ticked checkboxes): each 1 to MAX_ID."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        values = value if isinstance(value, list | tuple) else ([value] if value else [])
        if len(values) > VERIFY_MAX:
            raise forms.ValidationError(f"At most {VERIFY_MAX} crops at once.")
        ids = [id_parse(v) for v in values]
        if any(i is None for i in ids):
            raise forms.ValidationError("Crop ids are positive integers.")
        return [i for i in ids if i is not None]


class VerifyForm(forms.Form):
    """A bulk verification: the ticked crops (or, for ``confirm_page``, every crop shown),
    what to do with them, and the filters to come back to."""

    crop = IdListField(required=False)
    shown = IdListField(required=False)
    action = forms.ChoiceField(choices=[(a, a) for a in (*ACTIONS, CONFIRM_PAGE)])
    species = IdField(required=False)
    back = forms.CharField(max_length=2000, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") == CONFIRM_PAGE:
            data["crop_ids"], data["action"] = data.get("shown") or [], "confirm"
        else:
            data["crop_ids"] = data.get("crop") or []
        if "action" in data and not data["crop_ids"]:
            raise forms.ValidationError("Select at least one crop.")
        if data.get("action") == "correct" and data.get("species") is None:
            raise forms.ValidationError("Choose the species to correct the crops to.")
        return data

    def back_query(self) -> str:
        """The explore page's query string to return to, re-encoded (so nothing but a query
        string can come of it), without the cursor: the page starts again from the top."""
        query = QueryDict(self.cleaned_data.get("back") or "", mutable=True)
        query.pop("cursor", None)
        return query.urlencode()


class VerifyUndoForm(forms.Form):
    decision = forms.UUIDField()
    back = forms.CharField(max_length=2000, required=False)


class ExploreSettingsForm(forms.Form):
    """The admin's switch: may volunteers look at the explore page (read-only)?"""

    explore_volunteers = forms.BooleanField(required=False)


class ExploreFilterError(ValueError):
    """Filters that do not validate: the message says which and why."""


# The API's names for the filters it takes (those of the page's form).
API_FILTERS = ("source", "species", "confidence_min", "confidence_max", "round", "event")


def explore_filters_parse(*, project: Project, query: QueryDict) -> ExploreFilters:
    """The API's crop-list filters, validated exactly as the explore page's form validates
    them; ExploreFilterError (naming the field) for a bad value."""
    data = QueryDict(mutable=True)
    for name in API_FILTERS:
        data.setlist(name, query.getlist(name))
    form = ExploreFilterForm(data, project=project)
    if not form.is_valid():
        raise ExploreFilterError(form_errors_text(form))
    return form.filters()


def form_errors_text(form: forms.Form) -> str:
    """A form's errors in one line, each named by its field."""
    return "; ".join(
        error["message"] if field == "__all__" else f"{field}: {error['message']}"
        for field, errors in form.errors.get_json_data().items()
        for error in errors
    )
