"""The final label in SQL (``final_label_annotate``) against the Python rule (``final_label``)
on many random small projects; filters and keyset pages against brute force; verification."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from activelearn.final_labels import AutoAccept, FinalLabel, final_label
from activelearn.models import (
    ClassifierVersion,
    Consensus,
    Label,
    LabelKind,
    LabelOrigin,
    Prediction,
    Round,
    RoundCrop,
)
from activelearn.selectors import classifier_latest
from activelearn.selectors_explore import (
    SORTS,
    SOURCES,
    CursorError,
    ExploreFilters,
    _sort_key,
    cursor_encode,
    explore_page,
    explore_queryset,
    images_untimed_count,
    verify_decisions_recent,
)
from activelearn.services import LabelError
from activelearn.services.verify import crops_verify, verification_undo
from detector.models import Crop, Detection
from embeddings.models import EmbeddingVersion
from projects.models import Deployment, Image, Project, Species
from projects.sequences import capture_event

pytestmark = pytest.mark.django_db

SEEDS = range(12)


def _world(project: Project, rng: random.Random, n: int = 14) -> ClassifierVersion | None:
    """A random small project: crops with random consensus rows, predictions of two
    classifiers (the older one must be ignored), random thresholds; the latest classifier."""
    species = [Species.objects.create(project=project, name=f"s{i}", position=i) for i in range(3)]
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
    classifiers = []
    for number in (1, 2):
        per_species = {
            str(s.pk): rng.choice([None, 0.3, 0.6, 0.9]) for s in species if rng.random() < 0.5
        }
        classifiers.append(
            ClassifierVersion.objects.create(
                project=project,
                number=number,
                embedding_version=embedding,
                last_label_id=0,
                n_labels=0,
                n_classes=3,
                seed=0,
                path=f"c{number}",
                threshold=rng.choice([None, 0.5, 0.8]),
                thresholds_per_species=per_species or None,
                status=rng.choice(["ready", "ready", "failed"]) if number == 2 else "ready",
            )
        )
    user = User.objects.create_user(f"u{rng.random()}")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(n):
        image = Image.objects.create(
            project=project,
            path=f"/w/{i}.jpg",
            file_name=f"{rng.choice(['a', 'b'])}/{i}.jpg",
            width=10,
            height=10,
            seq_id=rng.choice(["", "seq1", "seq2"]),
            camera=rng.choice(["cam1", "cam2"]),
            taken_at=rng.choice([None, start + timedelta(days=rng.randrange(5))]),
            is_empty=rng.choice([None, True, False]),
        )
        det = Detection.objects.create(
            image=image, x=0, y=0, w=1, h=1, confidence=0.5, detector_version="t"
        )
        crop = Crop.objects.create(
            project=project,
            image=image,
            detection=det,
            file="c.jpg",
            padding=0.1,
            active=rng.random() < 0.8,
        )
        for classifier in classifiers:
            if rng.random() < 0.7:
                Prediction.objects.create(
                    crop=crop,
                    classifier=classifier,
                    species=rng.choice(species),
                    confidence=rng.choice([0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95]),
                )
        if rng.random() < 0.5:
            kind = rng.choice(list(LabelKind.values))
            sp = rng.choice(species) if kind == LabelKind.SPECIES else None
            label = Label.objects.create(
                project=project, crop=crop, user=user, kind=kind, species=sp
            )
            Consensus.objects.create(
                project=project,
                crop=crop,
                status=rng.choice(list(Consensus.Status.values)),
                kind=kind,
                species=sp,
                votes=1,
                agreement=rng.choice([0.5, 1.0]),
                label=label,
            )
    return classifier_latest(project=project)


def _python_finals(project: Project, classifier: ClassifierVersion | None) -> dict[int, FinalLabel]:
    """{crop id: FinalLabel} of the crops the exports list, by the Python rule."""
    rule = AutoAccept.of(classifier)
    out = {}
    crops = Crop.objects.filter(project=project).select_related("consensus__species")
    for crop in crops:
        consensus = Consensus.objects.filter(crop=crop).select_related("species").first()
        if not crop.active and consensus is None:
            continue
        prediction = (
            Prediction.objects.filter(classifier=classifier, crop=crop)
            .select_related("species")
            .first()
            if classifier
            else None
        )
        out[crop.pk] = final_label(consensus=consensus, prediction=prediction, threshold=rule)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_the_sql_final_label_is_the_python_rule(project: Project, seed: int) -> None:
    rng = random.Random(seed)
    classifier = _world(project, rng)
    expected = _python_finals(project, classifier)
    crops = explore_queryset(project=project, filters=ExploreFilters(), classifier=classifier)
    names = dict(Species.objects.values_list("id", "name"))
    rows = crops.values_list(  # type: ignore[misc]
        "pk", "final_kind", "final_species_id", "final_source", "final_confidence"
    )
    got = {pk: (kind, names.get(sid, ""), source, conf) for pk, kind, sid, source, conf in rows}
    assert got == {pk: (f.kind, f.species, f.source, f.confidence) for pk, f in expected.items()}


# What a page's rows are compared on: the crop and its final label's annotations.
_ROW = (
    "pk",
    "final_source",
    "final_kind",
    "final_species_id",
    "final_confidence",
    "machine_species_id",
    "machine_confidence",
)
# Pages walked to the end: each page's rows (``_ROW``) and its next cursor.
_Pages = list[tuple[list[tuple[object, ...]], str | None]]


def _single_query_pages(
    project: Project,
    filters: ExploreFilters,
    classifier: ClassifierVersion | None,
    sort: str,
    limit: int,
) -> _Pages:
    """The pages one query over ``explore_queryset`` gives (the rule in SQL, sorted on the
    CASE): each page's (id, final label) rows and its next cursor."""
    expression, descending = _sort_key(sort)
    crops = explore_queryset(project=project, filters=filters, classifier=classifier)
    order = ["-sort_key", "-id"] if descending else ["sort_key", "id"]
    rows = list(
        crops.annotate(sort_key=expression).order_by(*order).values_list("sort_key", *_ROW)  # type: ignore[misc]
    )
    pages: _Pages = []
    for start in range(0, max(len(rows), 1), limit):
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        cursor = cursor_encode(sort=sort, key=page[-1][0], crop_id=page[-1][1]) if more else None
        pages.append(([tuple(r[1:]) for r in page], cursor))
    return pages


def _walked_pages(
    project: Project,
    filters: ExploreFilters,
    classifier: ClassifierVersion | None,
    sort: str,
    limit: int,
) -> _Pages:
    """The pages ``explore_page`` gives, its cursors walked to the end."""
    pages: _Pages = []
    cursor = ""
    while True:
        page = explore_page(
            project=project,
            filters=filters,
            classifier=classifier,
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
        rows = [tuple(getattr(c, name) for name in _ROW) for c in page.crops]
        pages.append((rows, page.next_cursor))
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@pytest.mark.parametrize("seed", SEEDS)
def test_filters_and_keyset_pages_match_brute_force(project: Project, seed: int) -> None:
    rng = random.Random(1000 + seed)
    classifier = _world(project, rng, n=18)
    finals = _python_finals(project, classifier)
    species = list(Species.objects.filter(project=project))
    sp = rng.choice(species)
    round_ = Round.objects.create(
        project=project,
        number=1,
        strategy="random",
        size=3,
        seed=1,
        embedding_version=EmbeddingVersion.objects.get(project=project),
    )
    picked = rng.sample(sorted(finals), 3)
    deployment = Deployment.objects.create(project=project, deployment_id="d1")
    images = list(Image.objects.filter(project=project).order_by("pk"))
    Image.objects.filter(pk__in=[i.pk for i in rng.sample(images, len(images) // 2)]).update(
        deployment=deployment
    )
    RoundCrop.objects.bulk_create(
        RoundCrop(round=round_, crop_id=c, position=p) for p, c in enumerate(picked)
    )
    filters = ExploreFilters(
        species_id=rng.choice([None, sp.pk]),
        sources=rng.sample(list(SOURCES), rng.randrange(0, 3)),
        confidence_min=rng.choice([None, 0.5]),
        confidence_max=rng.choice([None, 0.9]),
        round_number=rng.choice([None, 1]),
        camera=rng.choice(["", "cam1"]),
        folder=rng.choice(["", "a"]),
        deployment=rng.choice(["", "d1"]),
        date_from=rng.choice([None, date(2024, 1, 2)]),
        date_to=rng.choice([None, date(2024, 1, 3)]),
        event=rng.choice(["", "seq1", f"image-{Image.objects.filter(project=project).first().pk}"]),  # type: ignore[union-attr]
        empty=rng.choice([None, True, False]),
        in_review=rng.choice([None, True, False]),
        no_time=rng.random() < 0.3,
    )
    if seed % 3 == 0:
        # The "verify species X" view: its machine-only fast path (the prediction index).
        filters = ExploreFilters(species_id=sp.pk, sources=["auto", "machine"])
    crops = {c.pk: c for c in Crop.objects.filter(pk__in=finals).select_related("image")}
    statuses = dict(Consensus.objects.values_list("crop_id", "status"))

    def keep(pk: int) -> bool:
        f, img = finals[pk], crops[pk].image
        day = img.taken_at.date() if img.taken_at else None
        return (
            (filters.species_id is None or (f.kind == "species" and f.species == sp.name))
            and (not filters.sources or f.source in [SOURCES[s] for s in filters.sources])
            and (filters.confidence_min is None or (f.confidence or -9) >= filters.confidence_min)
            and (
                filters.confidence_max is None
                or (f.confidence is not None and f.confidence <= filters.confidence_max)
            )
            and (filters.round_number is None or pk in picked)
            and (not filters.camera or img.camera == filters.camera)
            and (not filters.folder or img.file_name.startswith(filters.folder + "/"))
            and (not filters.deployment or img.deployment_id == deployment.pk)
            and (filters.date_from is None or (day is not None and day >= filters.date_from))
            and (filters.date_to is None or (day is not None and day <= filters.date_to))
            and (
                not filters.event
                or capture_event(seq_id=img.seq_id, image_id=img.pk) == filters.event
            )
            and (filters.empty is None or img.is_empty is filters.empty)
            and (filters.in_review is None or (statuses.get(pk) == "review") == filters.in_review)
            and (not filters.no_time or img.taken_at is None)
        )

    wanted = [pk for pk in sorted(finals) if keep(pk)]
    for sort in ("id", "confidence", "-confidence", "time"):
        pages = _walked_pages(project, filters, classifier, sort, rng.choice([1, 2, 5]))
        seen = [int(row[0]) for rows, _ in pages for row in rows]  # type: ignore[call-overload]
        assert sorted(seen) == wanted, sort
        assert len(seen) == len(set(seen))
        if sort == "confidence":
            keys = [
                (finals[pk].confidence if finals[pk].confidence is not None else -1.0, pk)
                for pk in seen
            ]
            assert keys == sorted(keys)
        if sort == "-confidence":
            keys = [
                (finals[pk].confidence if finals[pk].confidence is not None else -1.0, pk)
                for pk in seen
            ]
            assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("id", "x"),
        ("id", "-1"),
        ("confidence", "0.5"),
        ("confidence", "nan~3"),
        ("time", "1~2"),
        ("time", "2024-01-01T00:00:00~2"),
        ("sideways", ""),
    ],
)
def test_a_bad_cursor_or_sort_is_refused(project: Project, sort: str, cursor: str) -> None:
    with pytest.raises(CursorError):
        explore_page(
            project=project, filters=ExploreFilters(), classifier=None, sort=sort, cursor=cursor
        )


def test_verify_confirm_correct_not_animal_and_undo(project: Project, ecologist: User) -> None:
    rng = random.Random(3)
    classifier = _world(project, rng, n=10)
    predicted = list(
        Prediction.objects.filter(classifier=classifier, crop__active=True).values_list(
            "crop_id", "species_id"
        )
    )
    assert len(predicted) >= 3
    (a, sa), (b, _), (c, _) = predicted[:3]
    other = Species.objects.filter(project=project).exclude(pk=sa).first()
    assert other is not None
    confirm = crops_verify(
        project=project, user=ecologist, crop_ids=[a], action="confirm", classifier=classifier
    )
    correct = crops_verify(
        project=project,
        user=ecologist,
        crop_ids=[b, c],
        action="correct",
        species_id=other.pk,
        classifier=classifier,
    )
    crops_verify(
        project=project, user=ecologist, crop_ids=[c], action="not_animal", classifier=classifier
    )
    consensus = {x.crop_id: x for x in Consensus.objects.filter(crop_id__in=[a, b, c])}
    assert (consensus[a].status, consensus[a].species_id) == ("done", sa)
    assert (consensus[b].status, consensus[b].species_id) == ("done", other.pk)
    assert consensus[c].kind == LabelKind.NOT_ANIMAL
    labels = Label.objects.filter(decision=correct)
    assert {lab.origin for lab in labels} == {LabelOrigin.VERIFIED}
    assert {lab.user_id for lab in labels} == {ecologist.pk}
    assert all(lab.created_at is not None for lab in labels)
    recent = verify_decisions_recent(project=project)
    assert [d.decision for d in recent][1:] == [correct, confirm]
    # Undo the correction: b falls back to what it was before, c keeps its later decision.
    assert verification_undo(project=project, decision=correct) == 2
    assert Label.objects.filter(decision=correct, undone_at__isnull=False).count() == 2
    assert not Consensus.objects.filter(crop_id=b, label__decision=correct).exists()
    assert Consensus.objects.get(crop_id=c).kind == LabelKind.NOT_ANIMAL
    with pytest.raises(LabelError):
        verification_undo(project=project, decision=correct)


def test_verify_refuses_bad_input_and_stores_nothing(
    project: Project, ecologist: User, foreign: tuple[Project, Species, Crop]
) -> None:
    classifier = _world(project, random.Random(4), n=4)
    crop = Crop.objects.filter(project=project).first()
    assert crop is not None
    _, wolf, foreign_crop = foreign
    before = Label.objects.count()
    cases = [
        {"crop_ids": [], "action": "confirm"},
        {"crop_ids": [crop.pk], "action": "explode"},
        {"crop_ids": [foreign_crop.pk], "action": "not_animal"},
        {"crop_ids": [crop.pk], "action": "correct", "species_id": wolf.pk},
        {"crop_ids": [crop.pk], "action": "correct", "species_id": None},
    ]
    for case in cases:
        with pytest.raises(LabelError):
            crops_verify(project=project, user=ecologist, classifier=classifier, **case)  # type: ignore[arg-type]
    unpredicted = (
        Crop.objects.filter(project=project).exclude(predictions__classifier=classifier).first()
    )
    if unpredicted is not None:
        with pytest.raises(LabelError, match="no machine label"):
            crops_verify(
                project=project,
                user=ecologist,
                crop_ids=[unpredicted.pk],
                action="confirm",
                classifier=classifier,
            )
    assert Label.objects.count() == before


def test_untimed_images_are_counted(project: Project) -> None:
    for i, taken in enumerate([None, None, datetime(2024, 1, 1, tzinfo=UTC)]):
        Image.objects.create(
            project=project,
            path=f"/w/{i}.jpg",
            file_name=f"{i}.jpg",
            width=1,
            height=1,
            taken_at=taken,
        )
    assert images_untimed_count(project=project) == 2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_classifier", [True, False])
def test_pages_split_by_source_are_the_single_query_pages(
    project: Project, seed: int, with_classifier: bool
) -> None:
    """Every final-label filter (sources, species, confidence bounds) with every sort: the
    pages merged from the per-source parts (``_explore_parts``) have the rows, the order, the
    final labels and the cursors of one query on the CASE, walked to the end."""
    rng = random.Random(2000 + seed)
    classifier = _world(project, rng, n=16) if with_classifier else None
    if not with_classifier:
        _world(project, rng, n=16)
    species = list(Species.objects.filter(project=project).values_list("pk", flat=True))
    camera = ExploreFilters(camera="cam1")
    cases = [ExploreFilters(), camera]
    for size in range(1, len(SOURCES) + 1):
        for sources in itertools.combinations(sorted(SOURCES), size):
            cases.append(ExploreFilters(sources=list(sources)))
    for sp in species:
        cases.append(ExploreFilters(species_id=sp))
        cases.append(ExploreFilters(species_id=sp, sources=["auto", "machine"]))
        cases.append(ExploreFilters(species_id=sp, sources=["human"], confidence_min=0.6))
    cases += [
        ExploreFilters(confidence_min=0.5),
        ExploreFilters(confidence_max=0.6),
        ExploreFilters(confidence_min=0.3, confidence_max=0.6, sources=["auto", "human"]),
        ExploreFilters(sources=["machine", "none"], in_review=False, camera="cam2"),
        ExploreFilters(sources=["none"], no_time=True),
    ]
    for filters in cases:
        for sort in SORTS:
            limit = rng.choice([1, 3, 7])
            expected = _single_query_pages(project, filters, classifier, sort, limit)
            got = _walked_pages(project, filters, classifier, sort, limit)
            assert got == expected, (filters, sort, limit)
