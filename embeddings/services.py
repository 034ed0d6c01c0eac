"""Embedding stage, Django side: embed a project's crops, store the vectors, build the index."""

from __future__ import annotations

import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from detector.models import Crop
from embeddings.index import index_build, index_save
from embeddings.inference import embed_images
from embeddings.model import (
    BackboneInfo,
    EmbeddingNet,
    build_embedding_net,
    load_embedding_checkpoint,
    save_embedding_checkpoint,
)
from embeddings.models import EmbeddingVersion
from embeddings.projection import head_from_projection, pca_projection_fit
from embeddings.selectors import embedding_vectors_load, embedding_version_current
from embeddings.store import embeddings_load, embeddings_save
from embeddings.training import (
    TrainConfig,
    TrainResult,
    backbone_features,
    default_mode,
    embed_from_features,
    train_full,
    train_head,
)
from projects.jobs import JobTracker, job_track
from projects.models import Job, Project
from projects.storage import (
    stored_delete,
    stored_exists,
    stored_folder_local,
    stored_folder_write,
    stored_is_local,
    stored_list,
    stored_local,
    stored_local_root,
    stored_write,
)

logger = logging.getLogger(__name__)

CHECKPOINT = "model.pt"
# Crops fetched at once from a remote store (each a small GET, bound by latency).
CROP_FETCH_THREADS = 16
INDEX = "index.faiss"
# One immutable folder per growth of a backbone-features cache: features-<crops>-<hex>.
FEATURES_FOLDER = re.compile(r"features-(\d+)-[0-9a-f]+")
# The cache's folder before it was versioned (rewritten in place): read, replaced at growth.
FEATURES_LEGACY = "features"


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
        if project.embedding_checkpoint:
            net, info = load_embedding_checkpoint(project.embedding_checkpoint)
        else:
            net, info = build_embedding_net(
                backbone=project.backbone, weights=project.backbone_weights, seed=project.seed
            )
    except Exception as exc:
        version.status = EmbeddingVersion.Status.FAILED
        version.error = str(exc)
        version.save(update_fields=["status", "error"])
        raise
    features: tuple[np.ndarray, np.ndarray] | None = None
    if project.embedding_checkpoint:
        version.head_source = "checkpoint"
    else:
        # The head keeps what the backbone knows: PCA of this project's own crop features
        # (no labels needed), never a random projection (benchmarks/README.md#pca-head).
        features = _features_sync(
            version=version, net=net, info=info, detail=f"embedding every crop for v{number}"
        )
        version.head_source = _head_fit(net=net, features=features[1], seed=project.seed)
    _checkpoint_save(version=version, net=net, info=info)
    version.backbone = info.backbone
    version.weights_source = info.weights_source
    if project.embedding_checkpoint:
        version.weights_source = (
            f"checkpoint {project.embedding_checkpoint} ({info.weights_source})"
        )
    version.pretrained = info.pretrained
    version.embedding_dim = net.embedding_dim
    version.save(
        update_fields=["backbone", "weights_source", "pretrained", "embedding_dim", "head_source"]
    )
    if features is not None:
        ids, vectors = features[0], embed_from_features(net, features[1])
    else:
        ids = np.asarray(
            Crop.objects.filter(project=project).order_by("id").values_list("id", flat=True),
            dtype=np.int64,
        )
        vectors = _embed(version=version, ids=ids, detail=f"embedding every crop for v{number}")
    _vectors_write(version=version, ids=ids, vectors=vectors)
    with transaction.atomic():
        version.status = EmbeddingVersion.Status.READY
        version.activated_at = timezone.now()
        version.save(update_fields=["status", "activated_at"])
    return version


def _head_fit(*, net: EmbeddingNet, features: np.ndarray, seed: int) -> str:
    """Replace ``net``'s head by the PCA projection of ``features`` (N, F); say what it is."""
    if features.shape[0] == 0:
        return "seeded (no crop to fit a PCA head on yet)"
    projection = pca_projection_fit(features, dim=net.embedding_dim, seed=seed)
    net.head = head_from_projection(projection)
    return (
        f"pca of {features.shape[0]} crops "
        f"({100 * float(projection.explained.sum()):.0f}% of the feature variance)"
    )


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
    new_vectors = _embed(
        version=version, ids=missing, detail=f"embedding new crops with v{version.number}"
    )
    _vectors_write(
        version=version,
        ids=np.concatenate([old_ids, missing]),
        vectors=np.concatenate([old_vectors, new_vectors]),
    )


def _embed(*, version: EmbeddingVersion, ids: np.ndarray, detail: str) -> np.ndarray:
    """Embed the crops with primary keys ``ids`` (K,) → (K, dim) float32, in the same order.

    Reported as an embedding job (crops done of K) on the admin's dashboard, with ``detail``.
    """
    if ids.size == 0:
        return np.zeros((0, version.embedding_dim), dtype=np.float32)
    with _job(version=version, kind=Job.Kind.EMBEDDING, total=int(ids.size), detail=detail) as job:
        net, info = _checkpoint_load(version=version)
        paths = _crop_paths(ids)
        logger.info("embedding %d crops with %s", len(paths), version)
        return embed_images(net, paths, info=info, progress=job.advance)


def _job(*, version: EmbeddingVersion, kind: str, total: int, detail: str) -> JobTracker:
    """A dashboard job of ``version``'s project (without loading the project row)."""
    return job_track(project=Project(pk=version.project_id), kind=kind, total=total, detail=detail)


def _vectors_write(*, version: EmbeddingVersion, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Publish ids, vectors and index as a fresh folder of the data store, then switch the
    version to it and delete the folder it replaces."""
    relative = f"{version.directory}/crops-{ids.size}-{uuid.uuid4().hex[:8]}"
    index = index_build(vectors, ids, flat_max=settings.TRAPWISE_FAISS_FLAT_MAX, seed=version.seed)
    with stored_folder_write(kind="data", name=relative) as target:
        embeddings_save(target, ids=ids, vectors=vectors)
        index_save(index, target / INDEX)
    previous = version.vectors_dir
    version.vectors_dir = relative
    version.n_crops = int(ids.size)
    version.save(update_fields=["vectors_dir", "n_crops"])
    if previous:
        # Readers that loaded the old folder already hold its arrays in memory.
        stored_delete(kind="data", name=previous)


def _checkpoint_save(*, version: EmbeddingVersion, net: EmbeddingNet, info: BackboneInfo) -> None:
    """Publish ``net`` as ``version``'s checkpoint (``<directory>/model.pt`` in the data store).

    Written once per directory: fine-tuning retried after a killed worker moves the version to
    a fresh directory first (``_directory_renew_if_retried``).
    """
    with stored_write(kind="data", name=f"{version.directory}/{CHECKPOINT}") as local:
        save_embedding_checkpoint(net, info, local)


def _checkpoint_load(*, version: EmbeddingVersion) -> tuple[EmbeddingNet, BackboneInfo]:
    """``version``'s network and backbone info, from its checkpoint in the data store."""
    return load_embedding_checkpoint(
        stored_local(kind="data", name=f"{version.directory}/{CHECKPOINT}")
    )


# --- Fine-tuning in the loop -------------------------------------------------------------


def embedding_finetune_create(
    *, project: Project, parent: EmbeddingVersion, last_label_id: int, mode: str | None = None
) -> EmbeddingVersion:
    """Record the next version, to be fine-tuned from ``parent`` (status building).

    ``mode`` defaults to the project's setting; "auto" is full where CUDA exists, else head.
    """
    mode = mode or project.finetune_mode
    if mode == "auto":
        mode = default_mode()
    if mode not in ("head", "full"):
        raise ValueError(f"unknown fine-tuning mode {mode!r}; choose auto, head or full")
    number = (project.embedding_versions.aggregate(n=Max("number"))["n"] or 0) + 1
    return EmbeddingVersion.objects.create(
        project=project,
        number=number,
        parent=parent,
        mode=mode,
        backbone=parent.backbone,
        weights=parent.weights,
        weights_source=parent.weights_source,
        pretrained=parent.pretrained,
        embedding_dim=parent.embedding_dim,
        seed=(project.seed + number) % 2**31,
        epochs=project.finetune_epochs,
        last_label_id=last_label_id,
        directory=f"projects/{project.pk}/embeddings/v{number}",
    )


def embedding_finetune_run(
    *, version_id: int, crop_ids: np.ndarray, labels: np.ndarray
) -> EmbeddingVersion:
    """Fine-tune ``version`` from its parent on labelled crops, re-embed every crop, switch.

    ``crop_ids`` (L,) int64 and ``labels`` (L,) int64 are the labelled crops and their species.
    The project keeps using the parent until the new vectors and index are written; then the
    switch is one write. Safe to run twice: a version that is already ready (or failed, or was
    given up as abandoned) is returned as is; one left building by a killed worker is trained
    again from its parent, and its half-done files are replaced before it switches.
    """
    version = EmbeddingVersion.objects.select_related("parent", "project").get(pk=version_id)
    if version.status != EmbeddingVersion.Status.BUILDING:
        return version
    assert version.parent is not None, "a fine-tuned version needs a parent"
    _directory_renew_if_retried(version=version)
    try:
        net, info = _checkpoint_load(version=version.parent)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # The project's class balance applies to the triplet sampler as to the classifier.
        config = TrainConfig(
            mode=version.mode,
            epochs=version.epochs,
            seed=version.seed,
            device=device,
            class_balance=version.project.class_balance,
        )
        started = time.perf_counter()
        vectors: tuple[np.ndarray, np.ndarray] | None = None
        if version.mode == "head":
            result, vectors = _finetune_head(
                version=version, net=net, info=info, crop_ids=crop_ids, labels=labels, config=config
            )
        else:
            paths = _crop_paths(crop_ids)
            with _finetune_job(version=version, n_labels=int(labels.size)) as job:
                result = train_full(
                    net, paths, labels, info=info, config=config, progress=job.advance
                )
        _finetune_save(
            version=version,
            net=net,
            info=info,
            result=result,
            vectors=vectors,
            seconds=time.perf_counter() - started,
            n_labels=int(labels.size),
        )
    except Exception as exc:
        version.status, version.error = EmbeddingVersion.Status.FAILED, str(exc)
        version.save(update_fields=["status", "error"])
        raise
    return version


def _directory_renew_if_retried(*, version: EmbeddingVersion) -> None:
    """Give a building version a fresh directory when a killed run already published its
    checkpoint there, and delete what that run left: stored names are immutable, and a worker
    may hold the killed run's checkpoint in its cache under the old name."""
    if not stored_exists(kind="data", name=f"{version.directory}/{CHECKPOINT}"):
        return
    stale = version.directory
    version.directory = (
        f"projects/{version.project_id}/embeddings/v{version.number}-{uuid.uuid4().hex[:8]}"
    )
    version.vectors_dir, version.n_crops = "", 0
    version.save(update_fields=["directory", "vectors_dir", "n_crops"])
    stored_delete(kind="data", name=stale)


def _finetune_head(
    *,
    version: EmbeddingVersion,
    net: EmbeddingNet,
    info: BackboneInfo,
    crop_ids: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
) -> tuple[TrainResult, tuple[np.ndarray, np.ndarray]]:
    """Head-only: train on cached backbone features; re-embed every crop from the cache.

    Returns the training result and (crop ids (N,), vectors (N, 256)) of every crop.
    """
    ids, features = _features_sync(version=version, net=net, info=info)
    position = {int(c): i for i, c in enumerate(ids)}
    rows = [position[int(c)] for c in crop_ids]
    with _finetune_job(version=version, n_labels=int(labels.size)) as job:
        result = train_head(net, features[rows], labels, config=config, progress=job.advance)
    return result, (ids, embed_from_features(net, features))


def _finetune_job(*, version: EmbeddingVersion, n_labels: int) -> JobTracker:
    """The dashboard job of fine-tuning's training: one unit per epoch."""
    parent = f" from v{version.parent.number}" if version.parent is not None else ""
    return _job(
        version=version,
        kind=Job.Kind.FINETUNE,
        total=version.epochs,
        detail=f"v{version.number}{parent}, {version.mode} mode, {n_labels} labels, "
        f"{version.epochs} epochs",
    )


def _finetune_save(
    *,
    version: EmbeddingVersion,
    net: EmbeddingNet,
    info: BackboneInfo,
    result: TrainResult,
    vectors: tuple[np.ndarray, np.ndarray] | None,
    seconds: float,
    n_labels: int,
) -> None:
    _checkpoint_save(version=version, net=net, info=info)
    pending = vectors
    if pending is None:  # full mode: the backbone changed, so embed every crop's image again
        ids = np.asarray(
            Crop.objects.filter(project_id=version.project_id)
            .order_by("id")
            .values_list("id", flat=True),
            dtype=np.int64,
        )
        detail = f"re-embedding every crop with fine-tuned v{version.number}"
        pending = (ids, _embed(version=version, ids=ids, detail=detail))
    _vectors_write(version=version, ids=pending[0], vectors=pending[1])
    _version_extend(version=version)  # crops imported while it trained
    version.loss_curve = [round(float(x), 6) for x in result.loss_curve]
    version.n_train_labels, version.train_seconds = n_labels, seconds
    with transaction.atomic():
        version.status = EmbeddingVersion.Status.READY
        version.activated_at = timezone.now()
        version.save(
            update_fields=[
                "loss_curve",
                "n_train_labels",
                "train_seconds",
                "status",
                "activated_at",
            ]
        )


def _features_sync(
    *, version: EmbeddingVersion, net: EmbeddingNet, info: BackboneInfo, detail: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features (N, F) of every crop, cached once per crop and per backbone.

    Head-only fine-tuning never changes the backbone, so the cache of the root version's
    backbone serves all its head-only descendants. The cache is a folder of the data store,
    ``<root directory>/features-<crops>-<hex>``, never rewritten: growing it publishes a new
    folder (the newest is found by listing) and only then deletes the older ones.
    """
    root = version
    while root.parent is not None and root.mode == "head":
        root = root.parent
    ids, features = (np.zeros(0, np.int64), None)
    cached = _features_folders(directory=root.directory)
    for name in reversed(cached):
        try:
            ids, features = embeddings_load(
                stored_folder_local(kind="data", name=f"{root.directory}/{name}")
            )
            break
        except FileNotFoundError:  # replaced by a concurrent growth since the listing
            continue
    missing = np.asarray(
        Crop.objects.filter(project_id=version.project_id)
        .exclude(id__in=ids.tolist())
        .order_by("id")
        .values_list("id", flat=True),
        dtype=np.int64,
    )
    if missing.size or features is None:
        paths = _crop_paths(missing)
        detail = detail or f"backbone features of {missing.size} crops for head-only fine-tuning"
        with _job(version=version, kind=Job.Kind.EMBEDDING, total=len(paths), detail=detail) as job:
            new = backbone_features(net, paths, info=info, progress=job.advance)
        ids = np.concatenate([ids, missing])
        features = new if features is None else np.concatenate([features, new])
        name = f"features-{ids.size}-{uuid.uuid4().hex[:8]}"
        with stored_folder_write(kind="data", name=f"{root.directory}/{name}") as target:
            embeddings_save(target, ids=ids, vectors=features)
        for old in cached:
            stored_delete(kind="data", name=f"{root.directory}/{old}")
    return ids, features


def _features_folders(*, directory: str) -> list[str]:
    """Complete backbone-features folders under the stored folder ``directory``, oldest (fewest
    crops) first; the unversioned legacy folder counts as the oldest. A folder counts once
    both its files are listed (a remote store publishes them one by one)."""
    files: dict[str, set[str]] = {}
    for name in stored_list(kind="data", prefix=directory):
        folder, _, rest = name.partition("/")
        files.setdefault(folder, set()).add(rest)
    found: list[tuple[int, str]] = []
    for folder, names in files.items():
        if not {"ids.npy", "vectors.npy"} <= names:
            continue
        match = FEATURES_FOLDER.fullmatch(folder)
        if match is not None:
            found.append((int(match.group(1)), folder))
        elif folder == FEATURES_LEGACY:
            found.append((-1, folder))
    return [folder for _, folder in sorted(found)]


def _crop_paths(crop_ids: np.ndarray) -> list[Path]:
    """Local paths of the crops' JPEGs, in the order of ``crop_ids``.

    Locally the files in the crop store's folder. With a remote store, the worker's cached
    copies (``stored_local``; crop names are immutable, so a copy never goes stale), fetched
    by a few threads at once: one crop at a time, the round trips would cost more than the
    network embedding them. ValueError names the crop whose file is missing, as the reader
    of a missing local file does.
    """
    files = dict(Crop.objects.filter(id__in=crop_ids.tolist()).values_list("id", "file"))
    names = [files[int(i)] for i in crop_ids]
    if stored_is_local():
        root = stored_local_root(kind="crops")
        return [root / name for name in names]

    def fetch(name: str) -> Path:
        try:
            return stored_local(kind="crops", name=name)
        except FileNotFoundError as exc:
            raise ValueError(f"cannot read image {name}: the stored crop is missing") from exc

    with ThreadPoolExecutor(max_workers=CROP_FETCH_THREADS) as pool:
        return list(pool.map(fetch, names))
