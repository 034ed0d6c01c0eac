"""Embedding stage, Django side: embed a project's crops, store the vectors, build the index."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotator.models import Project
from detector.models import Crop
from embeddings.index import index_build, index_save
from embeddings.inference import embed_images
from embeddings.model import (
    build_embedding_net,
    load_embedding_checkpoint,
    save_embedding_checkpoint,
)
from embeddings.models import EmbeddingVersion
from embeddings.selectors import embedding_vectors_load, embedding_version_current
from embeddings.store import embeddings_save

logger = logging.getLogger(__name__)

CHECKPOINT = "model.pt"
INDEX = "index.faiss"


def embeddings_sync(*, project: Project) -> EmbeddingVersion:
    """Make the project's current embedding version cover every crop.

    Builds version 1 when there is none; otherwise embeds only the crops the current version
    lacks, with that version's own network, and rewrites its vectors and index.
    """
    version = embedding_version_current(project=project)
    if version is None:
        return embedding_version_build(project=project)
    _version_extend(version=version)
    return version


def embedding_version_build(*, project: Project) -> EmbeddingVersion:
    """Create a new embedding version from the project's backbone settings and embed all crops.

    A backbone whose weights cannot be loaded raises ``WeightsUnavailableError``; the version is
    kept as failed with the message, and nothing switches to random weights.
    """
    number = (
        project.embedding_versions.order_by("-number").values_list("number", flat=True).first() or 0
    ) + 1
    version = EmbeddingVersion.objects.create(
        project=project,
        number=number,
        backbone=project.backbone,
        weights=project.backbone_weights,
        weights_source="",
        pretrained=False,
        seed=project.seed,
        directory=f"projects/{project.pk}/embeddings/v{number}",
    )
    try:
        net, info = build_embedding_net(
            backbone=project.backbone, weights=project.backbone_weights, seed=project.seed
        )
    except Exception as exc:
        version.status = EmbeddingVersion.Status.FAILED
        version.error = str(exc)
        version.save(update_fields=["status", "error"])
        raise
    directory = _directory(version)
    directory.mkdir(parents=True, exist_ok=True)
    save_embedding_checkpoint(net, info, directory / CHECKPOINT)
    version.weights_source = info.weights_source
    version.pretrained = info.pretrained
    version.embedding_dim = net.head.out_features
    version.save(update_fields=["weights_source", "pretrained", "embedding_dim"])
    ids = np.asarray(
        Crop.objects.filter(project=project).order_by("id").values_list("id", flat=True),
        dtype=np.int64,
    )
    _vectors_write(version=version, ids=ids, vectors=_embed(version=version, ids=ids))
    with transaction.atomic():
        version.status = EmbeddingVersion.Status.READY
        version.activated_at = timezone.now()
        version.save(update_fields=["status", "activated_at"])
    return version


def _version_extend(*, version: EmbeddingVersion) -> None:
    old_ids, old_vectors = embedding_vectors_load(version=version)
    missing = np.asarray(
        Crop.objects.filter(project_id=version.project_id)
        .exclude(id__in=old_ids.tolist())
        .order_by("id")
        .values_list("id", flat=True),
        dtype=np.int64,
    )
    if missing.size == 0:
        return
    new_vectors = _embed(version=version, ids=missing)
    _vectors_write(
        version=version,
        ids=np.concatenate([old_ids, missing]),
        vectors=np.concatenate([old_vectors, new_vectors]),
    )


def _embed(*, version: EmbeddingVersion, ids: np.ndarray) -> np.ndarray:
    """Embed the crops with primary keys ``ids`` (K,) → (K, dim) float32, in the same order."""
    net, info = load_embedding_checkpoint(_directory(version) / CHECKPOINT)
    files = dict(Crop.objects.filter(id__in=ids.tolist()).values_list("id", "file"))
    paths = [Path(settings.MEDIA_ROOT) / files[int(i)] for i in ids]
    logger.info("embedding %d crops with %s", len(paths), version)
    return embed_images(net, paths, info=info)


def _vectors_write(*, version: EmbeddingVersion, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Write ids, vectors and index to a fresh sub-folder, then switch the version to it."""
    relative = f"{version.directory}/crops-{ids.size}-{uuid.uuid4().hex[:8]}"
    target = Path(settings.TRAPWISE_DATA_DIR) / relative
    embeddings_save(target, ids=ids, vectors=vectors)
    index_save(index_build(vectors, ids), target / INDEX)
    previous = version.vectors_dir
    version.vectors_dir = relative
    version.n_crops = int(ids.size)
    version.save(update_fields=["vectors_dir", "n_crops"])
    if previous:
        # Readers that loaded the old folder already hold its arrays in memory.
        shutil.rmtree(Path(settings.TRAPWISE_DATA_DIR) / previous, ignore_errors=True)


def _directory(version: EmbeddingVersion) -> Path:
    return Path(settings.TRAPWISE_DATA_DIR) / version.directory
