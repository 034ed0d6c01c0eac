"""A small project to explore: crops with known machine labels (test helper)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activelearn.models import ClassifierVersion, Prediction
from detector.models import Crop, Detection
from embeddings.models import EmbeddingVersion
from projects.models import Image, Project, Species

THRESHOLD = 0.8


def explore_world(project: Project, n: int = 12) -> tuple[ClassifierVersion, list[Crop]]:
    """``n`` crops on ``n`` images (two boxes each: one crop, one below the thresholds), all
    predicted by a READY classifier with auto-accept threshold 0.8: even crops "red fox", odd
    ones "agouti", confidences 0.50 to 0.99 spread over them. Returns (classifier, crops)."""
    fox, _ = Species.objects.get_or_create(project=project, name="red fox")
    agouti, _ = Species.objects.get_or_create(project=project, name="agouti", position=1)
    embedding = EmbeddingVersion.objects.create(
        project=project,
        number=1,
        backbone="t",
        weights="none",
        weights_source="t",
        pretrained=False,
        seed=1,
        directory="v1",
        status=EmbeddingVersion.Status.READY,
    )
    classifier = ClassifierVersion.objects.create(
        project=project,
        number=1,
        embedding_version=embedding,
        last_label_id=0,
        n_labels=0,
        n_classes=2,
        seed=0,
        path="c1",
        threshold=THRESHOLD,
    )
    start = datetime(2024, 5, 1, tzinfo=UTC)
    images = Image.objects.bulk_create(
        Image(
            project=project,
            path=f"/explore/{i}.jpg",
            file_name=f"cam{i % 2}/{i}.jpg",
            width=640,
            height=480,
            seq_id=f"seq{i // 3}",
            frame_num=i % 3,
            camera=f"camera {i % 2}",
            taken_at=start + timedelta(hours=i),
            is_empty=False,
            count=1,
        )
        for i in range(n)
    )
    detections = Detection.objects.bulk_create(
        Detection(image=img, x=0.1, y=0.2, w=0.3, h=0.25, confidence=0.9, detector_version="t")
        for img in images
    )
    Detection.objects.bulk_create(
        Detection(image=img, x=0.6, y=0.5, w=0.2, h=0.2, confidence=0.05, detector_version="t")
        for img in images
    )
    crops = Crop.objects.bulk_create(
        Crop(project=project, image=d.image, detection=d, file=f"crops/{i}.jpg", padding=0.1)
        for i, d in enumerate(detections)
    )
    Prediction.objects.bulk_create(
        Prediction(
            classifier=classifier,
            crop=c,
            species=fox if i % 2 == 0 else agouti,
            confidence=round(0.5 + 0.49 * i / max(n - 1, 1), 3),
            top=[],
        )
        for i, c in enumerate(crops)
    )
    return classifier, crops
