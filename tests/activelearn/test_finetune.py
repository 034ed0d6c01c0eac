"""Fine-tuning in the loop: due every N labels, trained, re-embedded, switched in one step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import User

from activelearn.models import ClassifierVersion
from activelearn.services import (
    FinetuneError,
    embedding_finetune_and_retrain,
    embedding_finetune_queue,
    finetune_interval,
    labels_import,
    round_start,
)
from detector.models import Crop
from embeddings.index import index_ids, index_load
from embeddings.models import EmbeddingVersion
from embeddings.selectors import (
    embedding_vectors_dir,
    embedding_vectors_load,
    embedding_version_current,
)
from embeddings.services import INDEX
from projects.models import Project

pytestmark = pytest.mark.django_db


def _label_by_sequence(project: Project, user: User, crops: list[Crop]) -> None:
    fox, agouti = project.species.get(name="red fox"), project.species.get(name="agouti")
    for crop in crops:
        species = fox if "Red_Fox" in crop.image.file_name else agouti
        labels_import(
            project=project, crop_ids=[crop.pk], user=user, kind="species", species_id=species.pk
        )


def test_due_after_every_n_species_labels(
    ingested_project: Project, volunteer: User, django_capture_on_commit_callbacks: Any
) -> None:
    ingested_project.finetune_every = 6
    ingested_project.save()
    crops = list(Crop.objects.select_related("image").order_by("id"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _label_by_sequence(ingested_project, volunteer, crops[:5])
    assert not callbacks and EmbeddingVersion.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _label_by_sequence(ingested_project, volunteer, crops[5:7])
    building = EmbeddingVersion.objects.get(status=EmbeddingVersion.Status.BUILDING)
    assert len(callbacks) == 1  # queued once, although two labels passed the mark
    assert building.parent is not None and building.parent.number == 1
    # Selection and prediction keep the old version until the switch.
    current = embedding_version_current(project=ingested_project)
    assert current is not None and current.number == 1


def test_head_finetune_switches_and_index_agrees(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    ingested_project.finetune_mode, ingested_project.finetune_epochs = "head", 3
    ingested_project.save()
    round_ = round_start(project=ingested_project, user=admin_user, strategy="random", size=100)
    crops = [item.crop for item in round_.items.select_related("crop__image")]
    _label_by_sequence(ingested_project, volunteer, crops)
    version = embedding_finetune_queue(project=ingested_project, force=True)
    assert version is not None and version.mode == "head"
    classifier = embedding_finetune_and_retrain(version_id=version.pk)

    version.refresh_from_db()
    assert version.status == EmbeddingVersion.Status.READY and version.activated_at is not None
    assert embedding_version_current(project=ingested_project) == version
    assert len(version.loss_curve) == 3 and version.n_train_labels == len(crops)
    ids, vectors = embedding_vectors_load(version=version)
    parent_ids, parent_vectors = embedding_vectors_load(version=version.parent)  # type: ignore[arg-type]
    assert sorted(ids.tolist()) == sorted(Crop.objects.values_list("id", flat=True))
    assert not np.allclose(vectors[np.argsort(ids)], parent_vectors[np.argsort(parent_ids)])
    index = index_load(embedding_vectors_dir(version=version) / INDEX)
    assert index_ids(index).tolist() == ids.tolist()  # index ids are crop pks
    stored = np.stack([index.reconstruct(int(i)) for i in ids])
    np.testing.assert_allclose(stored, vectors, atol=1e-6)  # the index holds the new vectors
    assert classifier is not None and classifier.embedding_version == version
    # Running the task again changes nothing.
    embedding_finetune_and_retrain(version_id=version.pk)
    assert EmbeddingVersion.objects.count() == 2 and ClassifierVersion.objects.count() == 1


def test_force_needs_two_species(ingested_project: Project, volunteer: User) -> None:
    crop = Crop.objects.first()
    assert crop is not None
    labels_import(project=ingested_project, crop_ids=[crop.pk], user=volunteer, kind="unknown")
    with pytest.raises(FinetuneError, match="two species"):
        embedding_finetune_queue(project=ingested_project, force=True)
    assert EmbeddingVersion.objects.count() == 1


def test_full_finetune_changes_the_backbone(
    ingested_project: Project, volunteer: User, settings: Any
) -> None:
    ingested_project.finetune_mode, ingested_project.finetune_epochs = "full", 1
    ingested_project.save()
    crops = list(Crop.objects.select_related("image").order_by("id"))
    _label_by_sequence(ingested_project, volunteer, crops)
    version = embedding_finetune_queue(project=ingested_project, force=True)
    assert version is not None and version.mode == "full"
    embedding_finetune_and_retrain(version_id=version.pk)
    version.refresh_from_db()
    assert version.status == EmbeddingVersion.Status.READY and len(version.loss_curve) == 1
    from embeddings.model import load_embedding_checkpoint

    root = Path(settings.TRAPWISE_DATA_DIR)
    parent_net, _ = load_embedding_checkpoint(root / version.parent.directory / "model.pt")  # type: ignore[union-attr]
    child_net, _ = load_embedding_checkpoint(root / version.directory / "model.pt")
    changed = [
        not np.allclose(a.detach().numpy(), b.detach().numpy())
        for a, b in zip(
            parent_net.backbone.parameters(), child_net.backbone.parameters(), strict=True
        )
    ]
    assert any(changed)


def test_a_version_abandoned_while_building_does_not_block_finetuning_for_good(
    ingested_project: Project, volunteer: User
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from activelearn.services import FINETUNE_ABANDONED_AFTER
    from embeddings.services import embedding_finetune_run

    _label_by_sequence(ingested_project, volunteer, list(Crop.objects.select_related("image")))
    stuck = embedding_finetune_queue(project=ingested_project, force=True)
    assert stuck is not None
    with pytest.raises(FinetuneError, match="fine-tuned already"):
        embedding_finetune_queue(project=ingested_project, force=True)
    # Its worker died and its task is gone; the time limit has long passed.
    old = timezone.now() - FINETUNE_ABANDONED_AFTER - timedelta(minutes=1)
    EmbeddingVersion.objects.filter(pk=stuck.pk).update(created_at=old)
    fresh = embedding_finetune_queue(project=ingested_project, force=True)
    assert fresh is not None and fresh.number == stuck.number + 1
    stuck.refresh_from_db()
    assert stuck.status == EmbeddingVersion.Status.FAILED and "abandoned" in stuck.error
    # Should its task still turn up, it changes nothing.
    empty = np.zeros(0, dtype=np.int64)
    embedding_finetune_run(version_id=stuck.pk, crop_ids=empty, labels=empty)
    stuck.refresh_from_db()
    assert stuck.status == EmbeddingVersion.Status.FAILED and not stuck.vectors_dir
    current = embedding_version_current(project=ingested_project)
    assert current is not None and current.number == 1


@pytest.mark.parametrize(
    ("every", "n_crops", "interval"),
    [
        (None, 0, 200),  # auto, floor
        (None, 637, 200),
        (None, 8_049, 800),  # a tenth, rounded to a hundred
        (None, 8_051, 800),
        (None, 12_600, 1_300),
        (None, 50_000, 2_000),  # auto, ceiling: the paper's flat schedule
        (None, 3_000_000, 2_000),
        (6, 50_000, 6),  # the project's number, as is
        (0, 50_000, 0),  # only on request
    ],
)
def test_finetune_interval(every: int | None, n_crops: int, interval: int) -> None:
    assert finetune_interval(finetune_every=every, n_crops=n_crops) == interval


@pytest.mark.parametrize(("every", "n_crops"), [(-1, 10), (None, -1)])
def test_finetune_interval_refuses_negatives(every: int | None, n_crops: int) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        finetune_interval(finetune_every=every, n_crops=n_crops)


def test_new_projects_are_auto_and_the_queue_uses_the_scaled_interval(
    ingested_project: Project,
    volunteer: User,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from activelearn.services import finetune

    assert Project._meta.get_field("finetune_every").get_default() is None
    assert ingested_project.finetune_every is None
    current = embedding_version_current(project=ingested_project)
    assert current is not None and current.n_crops > 0
    # A tenth of this small project is below any floor; a floor of 6 makes the interval 6.
    monkeypatch.setattr(finetune, "AUTO_MIN", 6)
    crops = list(Crop.objects.select_related("image").order_by("id"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _label_by_sequence(ingested_project, volunteer, crops[:5])
    assert not callbacks
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _label_by_sequence(ingested_project, volunteer, crops[5:7])  # two species by now
    assert len(callbacks) == 1
    assert EmbeddingVersion.objects.filter(status=EmbeddingVersion.Status.BUILDING).count() == 1


def test_zero_means_only_on_request(ingested_project: Project, volunteer: User) -> None:
    ingested_project.finetune_every = 0
    ingested_project.save()
    crops = list(Crop.objects.select_related("image").order_by("id"))
    _label_by_sequence(ingested_project, volunteer, crops[:8])
    assert EmbeddingVersion.objects.count() == 1
    assert embedding_finetune_queue(project=ingested_project, force=True) is not None


def test_a_finetuned_embedding_whose_classifier_is_rejected_is_not_kept(
    ingested_project: Project, admin_user: User, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from activelearn.services import retrain as retrain_module

    ingested_project.finetune_mode, ingested_project.finetune_epochs = "head", 2
    ingested_project.finetune_every = 3
    ingested_project.save()
    crops = list(Crop.objects.select_related("image").order_by("id"))
    _label_by_sequence(ingested_project, volunteer, crops[:8])
    parent = embedding_version_current(project=ingested_project)
    version = EmbeddingVersion.objects.get(status=EmbeddingVersion.Status.BUILDING)
    rejected = {"decision": "rejected", "reason": "worse on 25 audit crops: 18 right vs 20"}
    monkeypatch.setattr(retrain_module, "classifier_gate", lambda **_: rejected)
    classifier = embedding_finetune_and_retrain(version_id=version.pk)
    assert classifier is not None and classifier.embedding_version_id == version.pk
    assert classifier.status == ClassifierVersion.Status.REJECTED
    assert embedding_version_current(project=ingested_project) == parent  # switched back
    classifier.refresh_from_db()
    assert "not kept" in classifier.gate["embedding"]
    # The labels it was tuned on do not queue another fine-tuning at once.
    assert embedding_finetune_queue(project=ingested_project) is None
