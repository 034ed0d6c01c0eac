"""Classifier files and the k-Center cache through the storage layer (kind "data"), on the
local store and on a fresh S3 bucket (``s3_storage``: nothing may reach TRAPWISE_DATA_DIR)."""

from __future__ import annotations

import re
import shutil
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pytest
from django.db.models import Max

from activelearn.attributes import attributes_load, attributes_probabilities
from activelearn.classifier import classifier_load, ensemble_member_path, ensemble_predict_proba
from activelearn.models import ClassifierVersion, Consensus
from activelearn.selectors import classifier_cv_local, confusion_matrix_get
from activelearn.services import classifier_retrain, labels_import, round_start
from activelearn.services.rounds import kcenter_cache_update
from activelearn.services.settings import classifier_threshold_update
from detector.models import Crop
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_vectors_load
from embeddings.services import embedding_version_build
from projects.models import Project
from projects.storage import stored_local
from tests.embeddings.synthetic import (
    data_files,
    local_data_files,
    species_of,
    synthetic_crops,
    synthetic_features,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> Any:
    """None on the local store, else the ``s3_storage`` fixture (a fresh bucket)."""
    return request.getfixturevalue("s3_storage") if request.param == "s3" else None


def _label(project: Project, crops: list[Crop]) -> None:
    """Species labels by the admin, with the "standing" attribute ticked on foxes only."""
    standing = project.attributes.get(name="standing").pk
    user = project.created_by
    assert user is not None
    for crop in crops:
        species = species_of(crop)
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=user,
            kind="species",
            species_id=species.pk,
            attributes=[standing] if species.name == "red fox" else [],
        )


def test_a_retrained_classifier_and_its_files_live_in_the_data_store(
    project: Project, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic_features(monkeypatch)
    crops = synthetic_crops(project, n=24)
    embedding_version_build(project=project)
    _label(project, crops)
    classifier = classifier_retrain(project_id=project.pk)
    assert classifier is not None and classifier.cv_accuracy is not None
    assert classifier.path == f"projects/{project.pk}/classifiers/v1.joblib"
    members = [
        str(ensemble_member_path(PurePosixPath(classifier.path), k))
        for k in range(classifier.ensemble_size)
    ]
    files = [f for f in data_files(store) if "/classifiers/" in f]
    assert files == sorted(
        [
            *members,
            f"projects/{project.pk}/classifiers/v1.attributes.joblib",
            f"projects/{project.pk}/classifiers/v1.cv.npz",
        ]
    )
    if store is not None:
        assert local_data_files() == []
    # The stored ensemble predicts every crop's species from its vector.
    version = EmbeddingVersion.objects.get(project=project)
    ids, vectors = embedding_vectors_load(version=version)
    loaded = [classifier_load(stored_local(kind="data", name=name)) for name in members]
    probs, classes = ensemble_predict_proba(loaded, vectors)
    truth = {c.pk: species_of(c).pk for c in crops}
    assert [int(classes[i]) for i in probs.argmax(axis=1)] == [truth[int(i)] for i in ids]
    head_name = PurePosixPath(classifier.path).with_suffix(".attributes.joblib")
    head = attributes_load(stored_local(kind="data", name=str(head_name)))
    standing = attributes_probabilities(head, vectors)[:, 0]
    foxes = np.asarray([species_of(c).name == "red fox" for c in crops])
    assert (standing[foxes] > 0.5).all() and (standing[~foxes] < 0.5).all()
    # The cross-validation file feeds the confusion matrix and a new target accuracy.
    path = classifier_cv_local(classifier=classifier)
    assert path is not None
    with np.load(path) as cv:
        assert cv["confidence"].shape == (24,)
    view = confusion_matrix_get(project=project)
    assert view is not None and view.n_crops == 24
    classifier_threshold_update(classifier=classifier, target=0.5)
    assert ClassifierVersion.objects.get(pk=classifier.pk).target_accuracy == 0.5


def test_a_worker_with_an_empty_cache_reads_the_cv_file(
    project: Project, s3_storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic_features(monkeypatch)
    crops = synthetic_crops(project, n=20)
    embedding_version_build(project=project)
    _label(project, crops)
    classifier = classifier_retrain(project_id=project.pk)
    assert classifier is not None
    first = confusion_matrix_get(project=project)
    shutil.rmtree(s3_storage.cache)
    path = classifier_cv_local(classifier=classifier)
    assert path is not None and path.is_relative_to(s3_storage.cache)
    again = confusion_matrix_get(project=project)
    assert first is not None and again is not None
    np.testing.assert_array_equal(again.counts, first.counts)
    # A classifier whose cv file is missing has none (no error).
    classifier.path = "projects/0/classifiers/gone.joblib"
    assert classifier_cv_local(classifier=classifier) is None
    assert local_data_files() == []


def test_the_k_center_cache_is_a_new_file_per_state(
    project: Project, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kcenter_min_sq-<newest label>-<undone>.npy beside the vectors: a new name as labels
    come in, the older file deleted, and the cached distances equal a fresh computation."""
    from activelearn.selection import min_sq_distances_update

    synthetic_features(monkeypatch)
    crops = synthetic_crops(project, n=16)
    version = embedding_version_build(project=project)
    _label(project, crops[:3])

    def cache_files() -> list[str]:
        prefix = f"{version.vectors_dir}/"
        return [
            f.removeprefix(prefix)
            for f in data_files(store)
            if f.startswith(prefix) and "kcenter" in f
        ]

    chosen = round_start(project=project, user=project.created_by, strategy="k_center", size=2)
    first_last = Consensus.objects.aggregate(n=Max("label_id"))["n"]
    assert cache_files() == [f"kcenter_min_sq-{first_last}-0.npy"]
    _label(project, list(Crop.objects.filter(pk__in=chosen.items.values("crop_id"))))
    last = Consensus.objects.aggregate(n=Max("label_id"))["n"]
    assert last > first_last
    ids, vectors = embedding_vectors_load(version=version)
    cache = kcenter_cache_update(version=version, ids=ids, vectors=vectors)
    assert cache_files() == [f"kcenter_min_sq-{last}-0.npy"]
    labelled = np.flatnonzero(
        np.isin(ids, list(Consensus.objects.values_list("crop_id", flat=True)))
    )
    fresh = min_sq_distances_update(vectors, min_sq=None, new_rows=labelled)
    np.testing.assert_allclose(cache, fresh, rtol=1e-5, atol=1e-6)
    assert all(re.fullmatch(r"kcenter_min_sq-\d+-\d+\.npy", f) for f in cache_files())
    if store is not None:
        assert local_data_files() == []
        # A worker whose cache is empty reads the cache file, then the whole vectors folder.
        shutil.rmtree(store.cache)
        again = kcenter_cache_update(version=version, ids=ids, vectors=vectors)
        np.testing.assert_array_equal(again, cache)
        again_ids, again_vectors = embedding_vectors_load(version=version)
        np.testing.assert_array_equal(again_vectors, vectors)
