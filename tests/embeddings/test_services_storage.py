"""Embedding data files through the storage layer (``projects.storage``, kind "data").

Each test runs on the local store (the embedded default: files under TRAPWISE_DATA_DIR) and on
a fresh S3 bucket (``s3_storage``), where nothing may be written under TRAPWISE_DATA_DIR and a
worker with an empty cache must read the same bytes back.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

import numpy as np
import pytest
import torch

from embeddings.index import index_load, index_search
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_vectors_dir, embedding_vectors_load
from embeddings.services import (
    CHECKPOINT,
    INDEX,
    embedding_finetune_create,
    embedding_finetune_run,
    embedding_version_build,
    embeddings_sync,
)
from embeddings.store import embeddings_load
from projects.models import Project
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


def _version_files(store: Any, version: EmbeddingVersion) -> list[str]:
    """The version's files in the data store, relative to its directory."""
    prefix = f"{version.directory}/"
    return [name.removeprefix(prefix) for name in data_files(store) if name.startswith(prefix)]


def _shape(files: list[str]) -> list[str]:
    """``files`` with the generated hex of folder names replaced by ``*``."""
    return sorted(re.sub(r"-[0-9a-f]{8}/", "-*/", name) for name in files)


def test_a_version_is_published_to_the_data_store_and_read_back(
    project: Project, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic_features(monkeypatch)
    crops = synthetic_crops(project, n=12)
    version = embedding_version_build(project=project)
    assert version.status == EmbeddingVersion.Status.READY and version.n_crops == 12
    assert _shape(_version_files(store, version)) == [
        "crops-12-*/ids.npy",
        "crops-12-*/index.faiss",
        "crops-12-*/vectors.npy",
        "features-12-*/ids.npy",
        "features-12-*/vectors.npy",
        CHECKPOINT,
    ]
    assert version.vectors_dir.startswith(f"{version.directory}/crops-12-")
    if store is not None:
        assert local_data_files() == []  # nothing reached the local data folder
    ids, vectors = embedding_vectors_load(version=version)
    assert ids.tolist() == [c.pk for c in crops] and vectors.shape == (12, 256)
    # mmap reads work on the folder the selector hands out (the cached copy on S3).
    mapped_ids, mapped = embeddings_load(embedding_vectors_dir(version=version), mmap=True)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped), vectors)
    np.testing.assert_array_equal(np.asarray(mapped_ids), ids)
    # Similar crops: the index returns crop ids, nearest first; the same species sits nearby.
    index = index_load(embedding_vectors_dir(version=version) / INDEX, gpu=False)
    _, found = index_search(index, vectors, 3)
    assert found[:, 0].tolist() == ids.tolist()
    by_id = {c.pk: species_of(c).pk for c in crops}
    assert all(by_id[int(row[1])] == by_id[int(row[0])] for row in found)


def test_a_worker_with_an_empty_cache_reads_the_same_arrays(
    project: Project, s3_storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embeddings.model import load_embedding_checkpoint
    from projects.storage import stored_local

    synthetic_features(monkeypatch)
    synthetic_crops(project, n=8)
    version = embedding_version_build(project=project)
    ids, vectors = embedding_vectors_load(version=version)
    net, _ = load_embedding_checkpoint(
        stored_local(kind="data", name=f"{version.directory}/{CHECKPOINT}")
    )
    shutil.rmtree(s3_storage.cache)  # another worker: no shared disk, nothing cached yet
    version = EmbeddingVersion.objects.get(pk=version.pk)
    again_ids, again = embedding_vectors_load(version=version)
    np.testing.assert_array_equal(again_ids, ids)
    np.testing.assert_array_equal(again, vectors)
    assert embedding_vectors_dir(version=version).is_relative_to(s3_storage.cache)
    other, _ = load_embedding_checkpoint(
        stored_local(kind="data", name=f"{version.directory}/{CHECKPOINT}")
    )
    for (key, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), key
    assert local_data_files() == []


def test_new_crops_publish_new_folders_and_delete_the_old_ones(
    project: Project, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names are immutable: new vectors and a grown features cache are new folders; the ones
    they replace are deleted after the switch. Head-only fine-tuning reads the grown cache."""
    from activelearn.services import labels_import

    synthetic_features(monkeypatch)
    crops = synthetic_crops(project, n=10)
    version = embedding_version_build(project=project)
    first_vectors = version.vectors_dir
    crops += synthetic_crops(project, n=4, start=10)
    embeddings_sync(project=project)
    version.refresh_from_db()
    assert version.vectors_dir != first_vectors and version.n_crops == 14
    files = _version_files(store, version)
    assert _shape(files) == [
        "crops-14-*/ids.npy",
        "crops-14-*/index.faiss",
        "crops-14-*/vectors.npy",
        "features-10-*/ids.npy",  # embedding new crops needs no backbone features
        "features-10-*/vectors.npy",
        CHECKPOINT,
    ]
    old_features = next(f for f in files if f.startswith("features-10-")).split("/")[0]
    user = project.created_by
    assert user is not None
    for crop in crops:
        labels_import(
            project=project,
            crop_ids=[crop.pk],
            user=user,
            kind="species",
            species_id=species_of(crop).pk,
        )
    child = embedding_finetune_create(project=project, parent=version, last_label_id=0, mode="head")
    child.epochs = 1
    child.save(update_fields=["epochs"])
    ids = np.asarray([c.pk for c in crops], dtype=np.int64)
    labels = np.asarray([species_of(c).pk for c in crops], dtype=np.int64)
    embedding_finetune_run(version_id=child.pk, crop_ids=ids, labels=labels)
    child.refresh_from_db()
    assert child.status == EmbeddingVersion.Status.READY, child.error
    # The root's cache grew to 14 crops under a new name; the 10-crop folder is gone.
    root_files = _version_files(store, version)
    assert _shape(root_files) == [
        "crops-14-*/ids.npy",
        "crops-14-*/index.faiss",
        "crops-14-*/vectors.npy",
        "features-14-*/ids.npy",
        "features-14-*/vectors.npy",
        CHECKPOINT,
    ]
    assert not any(f.startswith(f"{old_features}/") for f in root_files)
    assert _shape(_version_files(store, child)) == [
        "crops-14-*/ids.npy",
        "crops-14-*/index.faiss",
        "crops-14-*/vectors.npy",
        CHECKPOINT,
    ]
    child_ids, child_vectors = embedding_vectors_load(version=child)
    assert sorted(child_ids.tolist()) == sorted(ids.tolist()) and child_vectors.shape[1] == 256
    if store is not None:
        assert local_data_files() == []


def test_finetuning_retried_after_a_killed_worker_writes_a_fresh_directory(
    project: Project, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed run left a checkpoint (maybe cached by its worker): the retry never writes over
    it, but trains into a new directory and deletes the stale one."""
    from embeddings.model import load_embedding_checkpoint
    from projects.storage import stored_local, stored_put

    synthetic_features(monkeypatch)
    crops = synthetic_crops(project, n=10)
    parent = embedding_version_build(project=project)
    child = embedding_finetune_create(project=project, parent=parent, last_label_id=0, mode="head")
    child.epochs = 1
    child.save(update_fields=["epochs"])
    stale = child.directory
    stored_put(kind="data", name=f"{stale}/{CHECKPOINT}", content=b"killed run")
    ids = np.asarray([c.pk for c in crops], dtype=np.int64)
    labels = np.asarray([species_of(c).pk for c in crops], dtype=np.int64)
    embedding_finetune_run(version_id=child.pk, crop_ids=ids, labels=labels)
    child.refresh_from_db()
    assert child.status == EmbeddingVersion.Status.READY, child.error
    assert child.directory.startswith(f"{stale}-") and child.vectors_dir.startswith(child.directory)
    assert not any(f.startswith(f"{stale}/") for f in data_files(store))
    load_embedding_checkpoint(stored_local(kind="data", name=f"{child.directory}/{CHECKPOINT}"))
    assert embedding_vectors_load(version=child)[0].size == 10
