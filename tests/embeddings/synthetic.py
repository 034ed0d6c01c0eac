"""A project whose crops' files hold no picture: their backbone features are made up, in two
well separated clusters (one per species), so the embedding stage and the classifier run end to
end without decoding a pixel. The files exist in the crop store (a few placeholder bytes), since
the embedding service fetches them before handing their paths to the patched functions.

``synthetic_features`` patches the two places the embedding services read images
(``backbone_features`` and ``embed_images``); every other step is the real one: the PCA head,
the checkpoint, the features cache, the vectors, the FAISS index, the classifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings

from detector.models import Crop, Detection
from projects.models import Image, Project, Species
from projects.storage import stored_put

SPECIES = ("red fox", "agouti")
FEATURE_DIM = 1280  # efficientnet_lite0's pooled features


def _feature(path: Path) -> np.ndarray:
    """The made-up (FEATURE_DIM,) unit feature of the crop stored at ``path``: its species'
    centre plus small noise seeded by the file name."""
    species = 0 if path.name.startswith("fox-") else 1
    centre = np.zeros(FEATURE_DIM, dtype=np.float32)
    centre[species * 10 : species * 10 + 10] = 1.0
    seed = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:4], "little")
    noise = np.random.default_rng(seed).normal(0.0, 0.05, FEATURE_DIM).astype(np.float32)
    vector = centre + noise
    return vector / np.linalg.norm(vector)


def synthetic_features(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sequence[Path]], np.ndarray]:
    """Patch the embedding services to use the made-up features; returns the feature maker."""
    from embeddings import services
    from embeddings.training import embed_from_features

    def features(paths: Sequence[Path]) -> np.ndarray:
        if not paths:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        return np.stack([_feature(Path(p)) for p in paths])

    def backbone_features(net: Any, paths: Sequence[Path], **_: Any) -> np.ndarray:
        return features(paths)

    def embed_images(net: Any, paths: Sequence[Path], **_: Any) -> np.ndarray:
        return embed_from_features(net, features(paths))

    monkeypatch.setattr(services, "backbone_features", backbone_features)
    monkeypatch.setattr(services, "embed_images", embed_images)
    return features


def synthetic_crops(project: Project, *, n: int, start: int = 0) -> list[Crop]:
    """``n`` crops (half foxes, half agoutis, alternating), each on its own image (so its own
    capture event), each with a placeholder file in the crop store. Creates the two species
    when missing."""
    for position, name in enumerate(SPECIES):
        Species.objects.get_or_create(project=project, name=name, defaults={"position": position})
    crops = []
    for i in range(start, start + n):
        kind = "fox" if i % 2 == 0 else "agouti"
        image = Image.objects.create(
            project=project, path=f"/synthetic/{i}.jpg", file_name=f"{i}.jpg", width=64, height=64
        )
        detection = Detection.objects.create(
            image=image, x=0.1, y=0.1, w=0.5, h=0.5, confidence=0.9, detector_version="test"
        )
        crop = Crop.objects.create(
            project=project,
            image=image,
            detection=detection,
            file=f"crops/{kind}-{i}.jpg",
            padding=0.1,
        )
        stored_put(kind="crops", name=crop.file, content=b"placeholder")
        crops.append(crop)
    return crops


def species_of(crop: Crop) -> Species:
    """The species a synthetic crop was made as."""
    name = SPECIES[0] if Path(crop.file).name.startswith("fox-") else SPECIES[1]
    return Species.objects.get(project_id=crop.project_id, name=name)


def data_files(store: Any) -> list[str]:
    """Every file of the data store, by name: the bucket's ``data/`` keys with ``store`` (the
    ``s3_storage`` fixture), else the files under ``TRAPWISE_DATA_DIR``."""
    if store is not None:
        return [key.removeprefix("data/") for key in store.keys("data/")]
    root = Path(settings.TRAPWISE_DATA_DIR)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def local_data_files() -> list[Path]:
    """Files under ``TRAPWISE_DATA_DIR`` (none may appear while the data store is remote)."""
    root = Path(settings.TRAPWISE_DATA_DIR)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
