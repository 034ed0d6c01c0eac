"""The form that imports another tool's species predictions (README "Existing AI output")."""

from __future__ import annotations

from django import forms

from detector.external import FORMATS

# The largest predictions file the page accepts: SpeciesNet writes about 1 kB per image, so
# this is some 100,000 images; larger files go through `manage.py import_predictions`.
PREDICTIONS_MAX_BYTES = 100 * 1024 * 1024


class PredictionsImportForm(forms.Form):
    file = forms.FileField(
        help_text="MegaDetector batch output with classifications, or "
        "SpeciesNet's predictions JSON."
    )
    format = forms.ChoiceField(
        choices=[("auto", "Recognise it"), *((f, f) for f in FORMATS)],
        initial="auto",
        required=False,
    )
    name = forms.CharField(max_length=200, required=False, help_text="Default: as the file says.")
    version = forms.CharField(max_length=200, required=False)
    create_species = forms.BooleanField(
        required=False, label="Add the tool's unmatched taxa as species"
    )

    def clean_format(self) -> str:
        return str(self.cleaned_data.get("format") or "auto")

    def clean_file(self) -> object:
        upload = self.cleaned_data["file"]
        if upload.size > PREDICTIONS_MAX_BYTES:
            raise forms.ValidationError(
                f"the file is {upload.size // (1024 * 1024)} MB; at most "
                f"{PREDICTIONS_MAX_BYTES // (1024 * 1024)} MB here (use the import_predictions "
                "command for larger ones)"
            )
        return upload
