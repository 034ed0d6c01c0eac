"""Forms of the onboarding pages: a new project, and imports (a folder of the import roots or
an upload)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms

from annotator.forms import FloatField, IntegerField
from embeddings.backbones import OFFLINE_BACKBONES
from projects.import_roots import FolderImportError, import_root_path
from projects.models import DEFAULT_BACKBONE, ProjectDetector
from projects.services import PROJECT_NAME_MAX

# The longest relative path the folder browser takes (Image.path holds 1000 characters).
_PATH_MAX = 1000


class ProjectCreateForm(forms.Form):
    """What ``projects.services.project_create`` needs from a person."""

    name = forms.CharField(max_length=PROJECT_NAME_MAX)
    backbone = forms.ChoiceField(
        choices=[(b, b) for b in OFFLINE_BACKBONES],
        initial=DEFAULT_BACKBONE,
        help_text="The embedding's network; efficientnet_lite0 works offline.",
    )
    detector = forms.ChoiceField(choices=ProjectDetector.choices, initial=ProjectDetector.OFFLINE)
    detection_threshold = FloatField(min_value=0.0, max_value=1.0, initial=0.2)
    min_box_pixels = IntegerField(min_value=0, max_value=10_000, initial=8)


class FolderBrowseForm(forms.Form):
    """The folder browser's place: a configured root (by number) and a path below it."""

    root = IntegerField(min_value=0, max_value=1000, required=False)
    path = forms.CharField(max_length=_PATH_MAX, required=False, strip=False)

    def place(self) -> tuple[int, str]:
        """(root, path) when valid, else the first root's top."""
        if not self.is_valid():
            return 0, ""
        return self.cleaned_data["root"] or 0, self.cleaned_data["path"] or ""


class FolderImportForm(FolderBrowseForm):
    """A folder of a configured root to import, with an optional COCO file of the same root;
    both are resolved and confined to that root (``import_root_path``) while validating."""

    coco = forms.CharField(max_length=_PATH_MAX, required=False, strip=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        root = data.get("root") or 0
        try:
            _, data["folder_path"] = import_root_path(root=root, path=data.get("path") or "")
            coco: Path | None = None
            if data.get("coco"):
                _, coco = import_root_path(root=root, path=data["coco"])
            data["coco_path"] = coco
        except FolderImportError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data


class BucketImportForm(forms.Form):
    """An ``s3://bucket/prefix`` to import, with an optional COCO file in a bucket; whether the
    bucket is allowed (TRAPWISE_IMPORT_BUCKETS) is the import service's check."""

    source = forms.CharField(max_length=_PATH_MAX)
    coco = forms.CharField(max_length=_PATH_MAX, required=False)

    def clean_source(self) -> str:
        return _s3_location(self.cleaned_data["source"], what="the images")

    def clean_coco(self) -> str:
        coco = self.cleaned_data.get("coco") or ""
        return _s3_location(coco, what="the COCO file") if coco else ""


def _s3_location(text: str, *, what: str) -> str:
    text = text.strip()
    if not text.startswith("s3://"):
        raise forms.ValidationError(f"{what}: write an s3://bucket/prefix location")
    return text
