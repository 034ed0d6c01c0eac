"""Detector output and the crops cut from it."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from projects.models import Image, Job, Project


class Detection(models.Model):
    """One box as the detector gave it, above or below the threshold, or as a person drew it.

    Kept raw so that a new threshold re-derives crops without running the detector again.
    Box coordinates are normalised to [0, 1]: top-left x, y and width, height.

    Provenance: a machine box has ``detector_version`` (the detector and its version) and no
    ``drawn_by``; a box a person drew (an animal the detector missed, or a redrawn box) has
    ``drawn_by``/``drawn_at`` and ``detector_version`` HUMAN, and always becomes a crop,
    whatever the thresholds. A box a person dropped (``dropped_by``/``dropped_at``) never does;
    the row and its crop stay, so labels on it are never lost. A redrawn box is dropped and its
    replacement points back at it (``replaces``).
    """

    HUMAN = "human"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="detections")
    x = models.FloatField()
    y = models.FloatField()
    w = models.FloatField()
    h = models.FloatField()
    confidence = models.FloatField()
    category = models.CharField(max_length=50, default="animal")
    detector_version = models.CharField(max_length=300)
    drawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    drawn_at = models.DateTimeField(null=True, blank=True)
    dropped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    dropped_at = models.DateTimeField(null=True, blank=True)
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by"
    )

    class Meta:
        ordering = ["image_id", "-confidence", "id"]

    def __str__(self) -> str:
        return f"{self.category} {self.confidence:.2f} on image {self.image_id}"


class DetectionJob(models.Model):
    """One run of a detector over a project's undetected images, with its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="detection_jobs")
    detector = models.CharField(max_length=50)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    crops = models.PositiveIntegerField(default=0)
    # The first problems met, as [file name, reason] pairs; the count is in ``failed``.
    problems = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The Celery node name of the worker that last started it (``projects.jobs.worker_current``).
    worker = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.detector} on {self.project} ({self.status})"


class Crop(models.Model):
    """An animal crop: the unit that is embedded, selected, labelled and predicted."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="crops")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="crops")
    detection = models.OneToOneField(Detection, on_delete=models.CASCADE, related_name="crop")
    file = models.CharField(
        max_length=500, help_text="A name in the crop store (projects.storage)."
    )
    # The geometry the file was cut with (detector.crops.crop_rect); a project whose setting
    # differs recuts it.
    padding = models.FloatField()
    shape = models.CharField(max_length=10, default="box")
    # False once the project's thresholds drop its detection. The row stays, so that labels on
    # it are never lost; raising the threshold back reactivates it.
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # A project's crops in id order (the explore page's pages): without it a project
        # created after a big one read the big one's crops first, at every first page.
        indexes = [models.Index(fields=["project", "id"], name="crop_project_id")]

    def __str__(self) -> str:
        return f"crop {self.pk} of {self.image}"


class ImageImport(models.Model):
    """An import asked for in the browser: a folder under the import roots, or an uploaded batch
    stored under the data folder. Its progress and problems are on ``job`` (``Job.Kind.IMPORT``).

    ``problems`` are those found before the job ran (an upload's files that were not images,
    duplicates); the job adds those of the import itself.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="image_imports")
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="image_import")
    folder = models.CharField(max_length=1000)
    coco = models.CharField(max_length=1000, blank=True)
    uploaded = models.BooleanField(default=False)
    problems = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import of {self.folder} into {self.project}"


class ExternalModel(models.Model):
    """Another tool's species classifier whose output was imported (SpeciesNet, a MegaDetector
    classifier, AddaxAI): one per project, name and version; importing the same again replaces
    its predictions.

    ``mapping`` is {the tool's label: project species id or None}, as matched on import
    (``detector.services_external``); ``problems`` lists what could not be used.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="external_models")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=200)
    format = models.CharField(max_length=20)
    source_file = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    mapping = models.JSONField(default=dict, blank=True)
    problems = models.JSONField(default=list, blank=True)
    imported_at = models.DateTimeField()
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-imported_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name", "version"], name="external_model_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class ExternalPrediction(models.Model):
    """One of an external model's ranked predictions, for an image (SpeciesNet predicts per
    image: ``crop`` is null) or for one crop (MegaDetector classifiers predict per box).

    ``species`` is null when the tool's ``label`` maps to none of the project's species; the
    raw label is always kept.
    """

    model = models.ForeignKey(ExternalModel, on_delete=models.CASCADE, related_name="predictions")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    crop = models.ForeignKey(
        Crop, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    species = models.ForeignKey(
        "projects.Species", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    label = models.CharField(max_length=500)
    score = models.FloatField()
    rank = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["model_id", "image_id", "crop_id", "rank"]
        indexes = [
            models.Index(fields=["crop", "rank"]),
            models.Index(fields=["image", "rank"]),
        ]

    def __str__(self) -> str:
        return f"{self.label} {self.score:.2f} ({self.model_id})"
