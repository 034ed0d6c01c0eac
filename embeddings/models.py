"""Embedding-model versions. The vectors and the FAISS index live in files, per version."""

from __future__ import annotations

from django.db import models

from projects.models import Project


class EmbeddingVersion(models.Model):
    class Status(models.TextChoices):
        BUILDING = "building"
        READY = "ready"
        FAILED = "failed"

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="embedding_versions"
    )
    number = models.PositiveIntegerField()
    # What the version was made of: the project's backbone name at build time (a concatenation
    # names every part; weights_source gives each part's weights, joined by " | ").
    backbone = models.CharField(max_length=200)
    weights = models.CharField(max_length=500, help_text="What was asked for.")
    weights_source = models.CharField(max_length=2000, help_text="Where the weights came from.")
    pretrained = models.BooleanField()
    embedding_dim = models.PositiveIntegerField(default=256)
    seed = models.PositiveIntegerField()
    # "pretrained" (backbone weights + seeded head, or a pretrained checkpoint), or the
    # fine-tuning mode that made it: "head" (head only, on cached backbone features) or "full".
    mode = models.CharField(max_length=60, default="pretrained")
    # How the 256-d head of a new version was made: "pca" (fitted on the project's own crop
    # features, no labels), "checkpoint" (a trained embedding), or "seeded" (random, from
    # ``seed``: only versions made before PCA heads, or built before any crop existed).
    head_source = models.CharField(max_length=200, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    epochs = models.PositiveIntegerField(default=0)
    loss_curve = models.JSONField(default=list, blank=True, help_text="Mean loss per epoch.")
    n_train_labels = models.PositiveIntegerField(default=0)
    # The newest label the version was trained with; labels after it count toward the next one.
    last_label_id = models.BigIntegerField(default=0)
    train_seconds = models.FloatField(default=0.0)
    directory = models.CharField(
        max_length=500, help_text="A name in the data store (projects.storage)."
    )
    # Vectors and index of the crops embedded so far, in a sub-folder of ``directory``. New crops
    # are written to a new sub-folder and this field is switched after, so readers never see
    # vectors and ids of different generations.
    vectors_dir = models.CharField(max_length=500, blank=True)
    n_crops = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.BUILDING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The project's current version is the ready one activated last; switching is one write.
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="embedding_version_unique")
        ]

    def __str__(self) -> str:
        return f"embedding v{self.number} ({self.backbone})"
