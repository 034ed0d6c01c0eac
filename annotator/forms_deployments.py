"""The deployments page's forms: one deployment, and a deployments CSV upload."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms

from annotator.forms import FloatField, IntegerField
from projects.deployments import (
    DeploymentCsvError,
    DeploymentFields,
    clock_offset_format,
    clock_offset_parse,
    time_parse,
)
from projects.models import Deployment

# A deployments CSV is a few lines per camera: 2 MB is tens of thousands of deployments.
CSV_UPLOAD_MAX = 2 * 1024 * 1024
TIME_HELP = "Camera-local time, ISO 8601, e.g. 2021-05-01T06:30 (a UTC offset, if any, is dropped)."


class _TimeField(forms.Field):
    """An ISO 8601 time, kept as its wall-clock reading (``projects.deployments``)."""

    widget = forms.TextInput(attrs={"maxlength": "40", "size": "25"})

    def to_python(self, value: Any) -> Any:
        text = str(value or "").strip()
        if not text:
            return None
        if len(text) > 40:
            raise forms.ValidationError("A time has at most 40 characters.")
        try:
            return time_parse(text, column="time", offset_required=False)
        except DeploymentCsvError as exc:
            raise forms.ValidationError(str(exc)) from None


class DeploymentForm(forms.Form):
    """One deployment; ``fields()`` gives what the services take (they check it again)."""

    deployment_id = forms.CharField(max_length=200, label="Deployment ID")
    location_name = forms.CharField(max_length=300, required=False, label="Location name")
    location_id = forms.CharField(max_length=200, required=False, label="Location ID")
    latitude = FloatField(min_value=-90, max_value=90)
    longitude = FloatField(min_value=-180, max_value=180)
    coordinate_uncertainty = IntegerField(min_value=1, required=False, label="Uncertainty (m)")
    start = _TimeField(help_text=TIME_HELP)
    end = _TimeField()
    camera_id = forms.CharField(max_length=200, required=False, label="Camera ID")
    folder = forms.CharField(
        max_length=1000,
        required=False,
        help_text="The images' folder under the import folder, e.g. site-A/cam-3.",
    )
    clock_offset = forms.RegexField(
        regex=r"^[+-]\d{2}:\d{2}$",
        initial="+00:00",
        label="Clock offset",
        help_text="How far the camera's clock ran ahead of true time, ±hh:mm.",
        error_messages={"invalid": "Give the offset as +hh:mm or -hh:mm, e.g. +01:00."},
    )
    setup_notes = forms.CharField(
        required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["start"] >= data["end"]:
            raise forms.ValidationError("The start must be before the end.")
        if data.get("clock_offset"):
            try:
                data["clock_offset_seconds"] = clock_offset_parse(data["clock_offset"])
            except DeploymentCsvError as exc:
                self.add_error("clock_offset", str(exc))
        return data

    def fields_value(self) -> DeploymentFields:
        data = self.cleaned_data
        return DeploymentFields(
            deployment_id=data["deployment_id"],
            latitude=data["latitude"],
            longitude=data["longitude"],
            start=data["start"],
            end=data["end"],
            location_name=data["location_name"],
            location_id=data["location_id"],
            coordinate_uncertainty=data["coordinate_uncertainty"],
            camera_id=data["camera_id"],
            folder=data["folder"],
            clock_offset_seconds=data["clock_offset_seconds"],
            setup_notes=data["setup_notes"],
        )

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentForm:
        """The form filled with ``deployment``'s values."""

        def wall(value: Any) -> str:
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if value else ""

        return cls(
            initial={
                "deployment_id": deployment.deployment_id,
                "location_name": deployment.location_name,
                "location_id": deployment.location_id,
                "latitude": deployment.latitude,
                "longitude": deployment.longitude,
                "coordinate_uncertainty": deployment.coordinate_uncertainty,
                "start": wall(deployment.start),
                "end": wall(deployment.end),
                "camera_id": deployment.camera_id,
                "folder": deployment.folder,
                "clock_offset": clock_offset_format(deployment.clock_offset_seconds),
                "setup_notes": deployment.setup_notes,
            }
        )


class DeploymentCsvForm(forms.Form):
    """A deployments CSV (the columns of ``projects.deployments``), UTF-8, at most 2 MB."""

    csv_file = forms.FileField(label="Deployments CSV")

    def text(self) -> str:
        """The file's text; call after ``is_valid``."""
        return str(self.cleaned_data["text"])

    def clean_csv_file(self) -> Any:
        upload = self.cleaned_data["csv_file"]
        if upload.size > CSV_UPLOAD_MAX:
            raise forms.ValidationError(
                f"The file is {upload.size} bytes; a deployments CSV may have at most "
                f"{CSV_UPLOAD_MAX} bytes."
            )
        try:
            self.cleaned_data["text"] = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text.") from None
        return upload
