"""The web app's own records: personal API tokens.

The records every app stands on (projects, members, species, images, jobs) live in ``projects``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A personal API token. Only a SHA-256 of the key is stored; the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    # The key's first characters, so that a user can tell tokens apart.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token {self.prefix}… of {self.user}"


class ExportFormat(models.TextChoices):
    """What an export job builds: the file's format (and its suffix in the download name)."""

    CAMTRAP_DP = "camtrap-dp", "Camtrap DP package (zip)"
    COCO = "coco", "COCO Camera Traps JSON"
    CROPS_CSV = "crops-csv", "Crops CSV"
    IMAGES_CSV = "images-csv", "Images CSV"
    EVENTS_CSV = "events-csv", "Events CSV"


class ExportFile(models.Model):
    """An export built in the background (``annotator.export_jobs``) and kept in the "exports"
    storage under ``name`` until an admin deletes it.

    ``job`` carries its status and progress; ``size`` is set once the file is published.
    ``classifier`` is the classifier version whose predictions the file holds (the latest
    ready one when the job ran; None: no classifier yet, or deleted since: ``classifier_number``
    and ``round_number`` still say which it was). ``options`` are the Camtrap DP package
    options, as given.
    """

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="export_files"
    )
    format = models.CharField(max_length=20, choices=ExportFormat.choices)
    job = models.OneToOneField("projects.Job", on_delete=models.CASCADE, related_name="export_file")
    # The stored name in the "exports" storage: unique and immutable (a token in its folder).
    name = models.CharField(max_length=300, unique=True)
    size = models.BigIntegerField(null=True, blank=True)
    options = models.JSONField(default=dict, blank=True)
    classifier = models.ForeignKey(
        "activelearn.ClassifierVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    classifier_number = models.PositiveIntegerField(null=True, blank=True)
    # The round the classifier was trained after (None: before any round, or no classifier).
    round_number = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.format} export of {self.project} ({self.name})"
