"""Reads of embedding versions and their vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings.models import EmbeddingVersion
from embeddings.store import embeddings_load
from projects.models import Project
from projects.storage import stored_folder_local


def embedding_version_current(*, project: Project) -> EmbeddingVersion | None:
    """The ready version activated last, or None."""
    return (
        EmbeddingVersion.objects.filter(
            project=project, status=EmbeddingVersion.Status.READY, activated_at__isnull=False
        )
        .order_by("-activated_at", "-number")
        .first()
    )


def embedding_vectors_load(*, version: EmbeddingVersion) -> tuple[np.ndarray, np.ndarray]:
    """Crop ids (N,) int64 and vectors (N, dim) float32 of ``version``, loaded without a loop."""
    return embeddings_load(embedding_vectors_dir(version=version))


def embedding_vectors_dir(*, version: EmbeddingVersion) -> Path:
    """A folder on this machine holding ``version``'s ids.npy, vectors.npy and FAISS index.

    ``version.vectors_dir`` names a folder of the data store (``projects.storage``, kind
    "data"): locally the folder itself, on a remote store a cached copy (the folder is never
    rewritten, so the copy never goes stale); read it with mmap as any local file.
    FileNotFoundError when the store has no such folder.
    """
    if not version.vectors_dir:
        raise ValueError(f"{version} has no vectors yet")
    return stored_folder_local(kind="data", name=version.vectors_dir)


def embedding_versions_list(*, project: Project, limit: int = 20) -> list[EmbeddingVersion]:
    """The project's newest embedding versions, with their parents."""
    return list(
        EmbeddingVersion.objects.filter(project=project)
        .select_related("parent")
        .order_by("-number")[:limit]
    )
