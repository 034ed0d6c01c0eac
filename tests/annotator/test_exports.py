"""The ecologists' exports: crop, image and event CSVs and COCO Camera Traps JSON.

The data are the small real project (two sequences of the missouri sample: 10 agouti frames,
6 with a box, and 5 red fox frames with a box each), labelled by people through the label
services, with a classifier whose predictions are written explicitly so that every rule of
``activelearn.final_labels.final_label`` is exercised:

    crop  image  human                      machine          final
    A1    1      agouti (done)              agouti 0.9       agouti, human
    A2    2      not an animal (done)       agouti 0.9       not_animal, human
    A3    3      unknown (done)             agouti 0.9       unknown, human
    A4    4      agouti (pending: 1 of 2)   agouti 0.6       agouti, machine
    A5    5      -                          agouti 0.5       agouti, machine
    A6    6      -                          red fox 0.95     red fox, auto (threshold 0.8)
    F1    11     red fox (done)             agouti 0.99      red fox, human (humans win)
    F2    12     -                          red fox 0.9      red fox, auto
    F2b   12     - (a second box added)     red fox 0.85     red fox, auto
    F3    13     -                          red fox 0.7      red fox, machine
    F4    14     -                          -                no label
    F5    15     -                          red fox 0.85     red fox, auto
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from activelearn.final_labels import final_label
from activelearn.models import ClassifierVersion, EventPrediction, Prediction
from activelearn.services import label_review, labels_import, round_start
from annotator import exports
from annotator.exports import (
    EVENT_HEADER,
    EXPORT_HEADER,
    IMAGE_HEADER,
    export_crop_rows,
    export_event_rows,
    export_image_rows,
)
from annotator.exports_coco import export_coco_json
from detector.models import Crop, Detection
from projects.models import Image, Project, Species
from tests.conftest import classifier_by_hand

pytestmark = pytest.mark.django_db

THRESHOLD = 0.8


@dataclass
class Scenario:
    project: Project
    classifier: ClassifierVersion
    crops: dict[str, Crop]
    fox: Species
    agouti: Species


def make_classifier(project: Project, *, threshold: float | None) -> ClassifierVersion:
    """A READY classifier version on the project's embedding (its predictions are set by hand)."""
    return classifier_by_hand(project, threshold=threshold)


def add_crop(image: Image, *, x: float = 0.05, y: float = 0.05) -> Crop:
    """A second box and crop on ``image`` (the export never reads the crop file)."""
    detection = Detection.objects.create(
        image=image, x=x, y=y, w=0.1, h=0.1, confidence=0.9, detector_version="test"
    )
    crop = Crop.objects.create(
        project=image.project, image=image, detection=detection, file="crops/x.jpg", padding=0.1
    )
    Image.objects.filter(pk=image.pk).update(count=image.crops.filter(active=True).count())
    return crop


def build_scenario(project: Project, admin: User, volunteer: User) -> Scenario:
    fox = project.species.get(name="red fox")
    agouti = project.species.get(name="agouti")
    agouti_crops = list(
        Crop.objects.filter(project=project, image__file_name__contains="Agouti").order_by("id")
    )
    fox_crops = list(
        Crop.objects.filter(project=project, image__file_name__contains="Red_Fox").order_by("id")
    )
    assert (len(agouti_crops), len(fox_crops)) == (6, 5)
    crops = {f"A{i + 1}": c for i, c in enumerate(agouti_crops)}
    crops |= {f"F{i + 1}": c for i, c in enumerate(fox_crops)}
    crops["F2b"] = add_crop(crops["F2"].image)

    def vote(name: str, kind: str, species: Species | None = None) -> None:
        labels_import(
            project=project,
            crop_ids=[crops[name].pk],
            user=volunteer,
            kind=kind,
            species_id=species.pk if species else None,
        )

    vote("A1", "species", agouti)
    vote("A2", "not_animal")
    vote("A3", "unknown")
    vote("F1", "species", fox)
    # Two votes needed from now on: A4's single vote leaves its consensus pending.
    Project.objects.filter(pk=project.pk).update(votes_per_crop=2)
    project.refresh_from_db()
    vote("A4", "species", agouti)

    classifier = make_classifier(project, threshold=THRESHOLD)
    machine = {
        "A1": (agouti, 0.9),
        "A2": (agouti, 0.9),
        "A3": (agouti, 0.9),
        "A4": (agouti, 0.6),
        "A5": (agouti, 0.5),
        "A6": (fox, 0.95),
        "F1": (agouti, 0.99),
        "F2": (fox, 0.9),
        "F2b": (fox, 0.85),
        "F3": (fox, 0.7),
        "F5": (fox, 0.85),
    }
    Prediction.objects.bulk_create(
        Prediction(classifier=classifier, crop=crops[n], species=s, confidence=c)
        for n, (s, c) in machine.items()
    )
    EventPrediction.objects.bulk_create(
        [
            EventPrediction(
                classifier=classifier, event="SEQ75520", species=agouti, confidence=0.8, n_crops=6
            ),
            EventPrediction(
                classifier=classifier, event="SEQ75179", species=fox, confidence=0.7, n_crops=6
            ),
        ]
    )
    return Scenario(project, classifier, crops, fox, agouti)


@pytest.fixture
def scenario(ingested_project: Project, admin_user: User, volunteer: User) -> Scenario:
    return build_scenario(ingested_project, admin_user, volunteer)


def table(header: list[str], rows: Any) -> list[dict[str, str]]:
    """Rows as the CSV writer would give them back: every value a string."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return list(csv.DictReader(io.StringIO(buffer.getvalue())))


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


# --- the rule -------------------------------------------------------------------------------


def test_final_label_humans_win_then_auto_then_machine(scenario: Scenario) -> None:
    from activelearn.models import Consensus

    crops = scenario.crops
    predictions = {
        p.crop_id: p
        for p in Prediction.objects.select_related("species").filter(crop__in=crops.values())
    }
    consensus = {
        c.crop_id: c
        for c in Consensus.objects.select_related("species").filter(crop__in=crops.values())
    }

    def final(name: str) -> tuple[str, str, str]:
        crop = crops[name]
        label = final_label(
            consensus=consensus.get(crop.pk),
            prediction=predictions.get(crop.pk),
            threshold=THRESHOLD,
        )
        return label.kind, label.species, label.source

    assert final("F1") == ("species", "red fox", "human")  # the machine said agouti at 0.99
    assert final("A2") == ("not_animal", "", "human")
    assert final("A3") == ("unknown", "", "human")
    assert consensus[crops["A4"].pk].status == "pending"
    assert final("A4") == ("species", "agouti", "machine")
    assert final("A6") == ("species", "red fox", "auto")
    assert final("F3") == ("species", "red fox", "machine")
    assert final("F4") == ("", "", "")
    # Without a threshold nothing is auto-accepted.
    label = final_label(consensus=None, prediction=predictions[crops["A6"].pk], threshold=None)
    assert label.source == "machine"


# --- crop level -----------------------------------------------------------------------------


def test_crop_rows_carry_consensus_machine_and_round(
    scenario: Scenario, admin_user: User, volunteer: User
) -> None:
    project, crops = scenario.project, scenario.crops
    round_ = round_start(project=project, user=admin_user, strategy="random", size=2)
    picked = set(round_.items.values_list("crop_id", flat=True))
    rows = {int(r["crop_id"]): r for r in table(EXPORT_HEADER, export_crop_rows(project=project))}
    assert set(rows) == {c.pk for c in crops.values()}
    a1 = rows[crops["A1"].pk]
    assert (a1["human_label"], a1["consensus_status"], a1["votes"], a1["agreement"]) == (
        "agouti",
        "done",
        "1",
        "1.0",
    )
    assert a1["labelled_by"] == volunteer.username and a1["labelled_at"]
    assert (a1["machine_label"], a1["machine_confidence"]) == ("agouti", "0.9")
    assert (a1["final_label"], a1["label_source"], a1["auto_accepted"]) == ("agouti", "human", "0")
    a4 = rows[crops["A4"].pk]
    assert (a4["human_label"], a4["consensus_status"], a4["votes"]) == ("agouti", "pending", "1")
    assert (a4["final_label"], a4["label_source"], a4["auto_accepted"]) == (
        "agouti",
        "machine",
        "0",
    )
    a6 = rows[crops["A6"].pk]
    assert (a6["human_label"], a6["consensus_status"], a6["labelled_by"]) == ("", "", "")
    assert (a6["final_label"], a6["label_source"], a6["auto_accepted"]) == ("red fox", "auto", "1")
    assert (a6["classifier_version"], a6["embedding_version"]) == ("classifier v1", "embedding v1")
    assert (a6["event_id"], a6["event_machine_label"]) == ("SEQ75520", "agouti")
    f1 = rows[crops["F1"].pk]
    assert (f1["human_label"], f1["machine_label"], f1["final_label"]) == (
        "red fox",
        "agouti",
        "red fox",
    )
    assert rows[crops["A2"].pk]["final_label"] == "not_animal"
    assert rows[crops["F4"].pk]["machine_label"] == rows[crops["F4"].pk]["label_source"] == ""
    # The second box on F2's image makes that frame count 2: the event count is 2 (max).
    assert rows[crops["F2"].pk]["image_count"] == "2"
    assert rows[crops["F1"].pk]["event_count"] == "2"
    for crop_id, row in rows.items():
        expected = ("1", "random") if crop_id in picked else ("", "")
        assert (row["round"], row["strategy"]) == expected


def test_inactive_crops_are_exported_only_with_a_human_vote(scenario: Scenario) -> None:
    project, crops = scenario.project, scenario.crops
    Crop.objects.filter(pk__in=[crops["F1"].pk, crops["F3"].pk]).update(active=False)
    crop_ids = {int(r["crop_id"]) for r in table(EXPORT_HEADER, export_crop_rows(project=project))}
    assert crops["F1"].pk in crop_ids  # labelled by a person: never dropped
    assert crops["F3"].pk not in crop_ids
    images = {r["image_file"]: r for r in table(IMAGE_HEADER, export_image_rows(project=project))}
    assert images[crops["F1"].image.file_name]["species"] == "red fox"
    assert images[crops["F3"].image.file_name]["n_crops"] == "0"


# --- image level ----------------------------------------------------------------------------


def test_image_rows_count_species_by_final_label(scenario: Scenario) -> None:
    project, crops = scenario.project, scenario.crops
    rows = {int(r["image_id"]): r for r in table(IMAGE_HEADER, export_image_rows(project=project))}
    assert set(rows) == set(Image.objects.filter(project=project).values_list("pk", flat=True))

    def of(name: str) -> dict[str, str]:
        return rows[crops[name].image_id]

    def cols(name: str, *keys: str) -> tuple[str, ...]:
        return tuple(of(name)[k] for k in keys)

    assert cols("A1", "species", "counts", "label_sources", "n_human_labelled") == (
        "agouti",
        "1",
        "human",
        "1",
    )
    assert cols("A2", "species", "n_not_animal", "n_human_labelled", "n_crops") == (
        "",
        "1",
        "1",
        "1",
    )
    assert cols("A3", "species", "n_unknown") == ("", "1")
    assert cols("A4", "species", "label_sources", "n_machine_only", "n_human_labelled") == (
        "agouti",
        "machine",
        "1",
        "0",
    )
    assert cols("A6", "species", "label_sources", "n_auto_accepted") == ("red fox", "auto", "1")
    assert cols("F1", "species", "label_sources") == ("red fox", "human")
    assert cols("F2", "species", "counts", "n_crops", "n_auto_accepted", "n_machine_only") == (
        "red fox",
        "2",
        "2",
        "2",
        "2",
    )
    assert cols("F4", "species", "n_unlabelled", "n_crops") == ("", "1", "1")
    empty = [r for r in rows.values() if r["is_empty"] == "1"]
    assert len(empty) == 4
    assert all((r["species"], r["n_crops"], r["image_count"]) == ("", "0", "0") for r in empty)
    first = of("A1")
    image = crops["A1"].image
    assert (first["seq_id"], first["event_id"], first["camera"]) == (
        image.seq_id,
        "SEQ75520",
        image.camera,
    )


# --- event level ----------------------------------------------------------------------------


def test_event_rows_take_the_maximum_over_frames(scenario: Scenario) -> None:
    project = scenario.project
    Image.objects.filter(project=project, seq_id="SEQ75179").update(taken_at="2021-06-01T10:00:00Z")
    rows = {r["event_id"]: r for r in table(EVENT_HEADER, export_event_rows(project=project))}
    assert set(rows) == {"SEQ75520", "SEQ75179"}
    agouti, fox = rows["SEQ75520"], rows["SEQ75179"]
    assert (agouti["species"], agouti["counts"], agouti["label_sources"]) == (
        "agouti;red fox",
        "1;1",
        "human+machine;auto",
    )
    assert (agouti["n_images"], agouti["n_crops"], agouti["n_human_labelled"]) == ("10", "6", "3")
    assert (agouti["n_auto_accepted"], agouti["n_machine_only"], agouti["n_unknown"]) == (
        "1",
        "3",
        "1",
    )
    assert agouti["n_not_animal"] == "1" and agouti["start"] == ""
    # Frame 12 holds two foxes: the event count is 2, not the 6 fox crops of the event.
    assert (fox["species"], fox["counts"], fox["label_sources"]) == (
        "red fox",
        "2",
        "human+auto+machine",
    )
    assert (fox["n_crops"], fox["n_unlabelled"], fox["n_images"]) == ("6", "1", "5")
    assert fox["start"] == fox["end"] == "2021-06-01T10:00:00+00:00"
    assert (fox["event_machine_label"], fox["event_machine_confidence"]) == ("red fox", "0.7")
    assert fox["classifier_version"] == "classifier v1"


def test_events_straddling_chunks_stay_whole(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "EXPORT_CHUNK", 3)
    rows = table(EVENT_HEADER, export_event_rows(project=scenario.project))
    assert [r["event_id"] for r in rows] == ["SEQ75179", "SEQ75520"]
    assert [r["n_images"] for r in rows] == ["5", "10"]
    assert rows[0]["counts"] == "2"


# --- COCO Camera Traps ----------------------------------------------------------------------


def test_coco_round_trip_through_the_importer(
    scenario: Scenario, admin_user: User, small_folder: Path, tmp_path: Path
) -> None:
    from detector.imported import ImportedDetector
    from detector.imports import images_import
    from detector.services import detections_run
    from projects.services import project_create

    project, crops = scenario.project, scenario.crops
    exported = tmp_path / "export.json"
    exported.write_text("".join(export_coco_json(project=project)))
    document = json.loads(exported.read_text())

    copy = project_create(name="Round trip", created_by=admin_user, backbone="efficientnet_lite0")
    images_import(project=copy, folder=small_folder, coco=exported)
    detections_run(project=copy, detector=ImportedDetector.from_coco_camera_traps(exported))

    def images_of(p: Project) -> dict[str, tuple[Any, ...]]:
        return {
            i.file_name: (i.width, i.height, i.seq_id, i.frame_num)
            for i in Image.objects.filter(project=p)
        }

    assert images_of(copy) == images_of(project)
    assert copy.images.count() == project.images.count() > 0
    names = set(copy.species.values_list("name", flat=True))
    assert names == set(project.species.values_list("name", flat=True)) | {"empty", "unknown"}

    def boxes(p: Project) -> dict[str, list[tuple[float, ...]]]:
        result: dict[str, list[tuple[float, ...]]] = {}
        for d in Detection.objects.filter(image__project=p).select_related("image"):
            result.setdefault(d.image.file_name, []).append((d.x, d.y, d.w, d.h))
        return {k: sorted(v) for k, v in result.items()}

    # Every box but the one people called "not an animal" comes back.
    original = Detection.objects.filter(crop__in=crops.values()).exclude(crop=crops["A2"])
    expected: dict[str, list[tuple[float, ...]]] = {}
    for d in original.select_related("image"):
        expected.setdefault(d.image.file_name, []).append((d.x, d.y, d.w, d.h))
    got = boxes(copy)
    assert set(got) == set(expected)
    for file_name, wanted in expected.items():
        for a, b in zip(sorted(wanted), got[file_name], strict=True):
            assert all(math.isclose(u, v, abs_tol=1e-4) for u, v in zip(a, b, strict=True))

    # The labels survive in the file (the importer reads boxes and species names only).
    category = {c["id"]: c["name"] for c in document["categories"]}
    by_id = {a["id"]: a for a in document["annotations"]}
    assert category[by_id[f"crop-{crops['F1'].pk}"]["category_id"]] == "red fox"
    assert by_id[f"crop-{crops['F1'].pk}"]["classification_method"] == "human"
    a6 = by_id[f"crop-{crops['A6'].pk}"]
    assert (category[a6["category_id"]], a6["conf"], a6["auto_accepted"]) == ("red fox", 0.95, True)
    assert category[by_id[f"crop-{crops['A3'].pk}"]["category_id"]] == "unknown"
    assert f"crop-{crops['A2'].pk}" not in by_id
    empty_images = Image.objects.filter(project=project, is_empty=True)
    for image in empty_images:
        assert by_id[f"image-{image.pk}"]["category_id"] == 0 and category[0] == "empty"
    first = next(i for i in document["images"] if i["id"] == str(crops["A1"].image_id))
    assert (first["seq_num_frames"], first["location"]) == (10, crops["A1"].image.camera)


def test_coco_image_ids_are_strings(scenario: Scenario) -> None:
    """COCO Camera Traps ids are strings (MegaDetector's integrity checker refuses integers by
    default); an image's id is its primary key, so it is the same in every export."""
    document = json.loads("".join(export_coco_json(project=scenario.project)))
    pks = set(Image.objects.filter(project=scenario.project).values_list("pk", flat=True))
    assert {image["id"] for image in document["images"]} == {str(pk) for pk in pks}
    assert document["annotations"]
    assert all(
        isinstance(a["id"], str) and isinstance(a["image_id"], str) for a in document["annotations"]
    )
    assert {a["image_id"] for a in document["annotations"]} <= {str(pk) for pk in pks}
    crop = scenario.crops["F1"]
    (f1,) = (a for a in document["annotations"] if a["id"] == f"crop-{crop.pk}")
    assert f1["image_id"] == str(crop.image_id)


# --- access, safety and cost ----------------------------------------------------------------

EXPORT_URLS = [
    "export_csv",
    "export_images_csv",
    "export_events_csv",
    "export_coco",
    "camtrap_dp_form",
    "export_camtrap_dp",
]


@pytest.mark.parametrize("name", EXPORT_URLS)
def test_only_admins_and_ecologists_export(
    name: str,
    project: Project,
    admin_user: User,
    ecologist: User,
    volunteer: User,
    outsider: User,
) -> None:
    url = reverse(name, args=[project.slug])
    assert _client(volunteer).get(url).status_code == 404
    assert _client(outsider).get(url).status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    for user in (admin_user, ecologist):
        response = _client(user).get(url)
        # The Camtrap DP zip without a location is refused with the form: 400, not 404.
        assert response.status_code == (400 if name == "export_camtrap_dp" else 200)


def test_downloads_are_named_after_the_project(scenario: Scenario, ecologist: User) -> None:
    client = _client(ecologist)
    slug = scenario.project.slug
    for name, suffix, header in [
        ("export_csv", "crops.csv", EXPORT_HEADER),
        ("export_images_csv", "images.csv", IMAGE_HEADER),
        ("export_events_csv", "events.csv", EVENT_HEADER),
    ]:
        response = client.get(reverse(name, args=[slug]))
        assert response["Content-Disposition"] == f'attachment; filename="{slug}-{suffix}"'
        assert next(csv.reader(io.StringIO(_body(response)))) == header
    response = client.get(reverse("export_coco", args=[slug]))
    assert response["Content-Disposition"] == f'attachment; filename="{slug}-coco.json"'
    assert len(json.loads(_body(response))["images"]) == 15


def test_csv_cells_cannot_run_formulas(scenario: Scenario, ecologist: User) -> None:
    scenario.fox.name = '=HYPERLINK("http://evil")'
    scenario.fox.save()
    client = _client(ecologist)
    slug = scenario.project.slug
    crops_csv = list(
        csv.DictReader(io.StringIO(_body(client.get(reverse("export_csv", args=[slug])))))
    )
    f1 = next(r for r in crops_csv if r["crop_id"] == str(scenario.crops["F1"].pk))
    assert f1["human_label"] == f1["final_label"] == '\'=HYPERLINK("http://evil")'
    for name in ("export_images_csv", "export_events_csv"):
        text = _body(client.get(reverse(name, args=[slug])))
        cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
        assert not any(c.startswith("=") for c in cells)
        assert any(c.startswith("'=HYPERLINK") for c in cells)


def _synthetic_project(project: Project, volunteer: User, n_images: int) -> None:
    """Grow ``project`` by ``n_images`` images with a labelled or predicted crop each."""
    classifier = ClassifierVersion.objects.get(project=project)
    fox = project.species.get(name="red fox")
    images = Image.objects.bulk_create(
        Image(
            project=project,
            path=f"/synthetic/{i}.jpg",
            file_name=f"synthetic/{i}.jpg",
            width=640,
            height=480,
            seq_id=f"SYN{i // 5}",
            frame_num=i % 5,
            camera="synthetic",
            is_empty=False,
            count=1,
            taken_at="2021-07-01T00:00:00Z",
        )
        for i in range(n_images)
    )
    detections = Detection.objects.bulk_create(
        Detection(image=i, x=0.1, y=0.1, w=0.2, h=0.2, confidence=0.9, detector_version="t")
        for i in images
    )
    crops = Crop.objects.bulk_create(
        Crop(project=project, image=d.image, detection=d, file="c.jpg", padding=0.1)
        for d in detections
    )
    half = len(crops) // 2
    labels_import(
        project=project,
        crop_ids=[c.pk for c in crops[:half]],
        user=volunteer,
        kind="species",
        species_id=fox.pk,
    )
    Prediction.objects.bulk_create(
        Prediction(classifier=classifier, crop=c, species=fox, confidence=0.9) for c in crops[half:]
    )


def _queries(run: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        run()
    return len(queries)


EXPORTS = {
    "crops": lambda p: list(export_crop_rows(project=p)),
    "images": lambda p: list(export_image_rows(project=p)),
    "events": lambda p: list(export_event_rows(project=p)),
    "coco": lambda p: "".join(export_coco_json(project=p)),
}


def test_queries_grow_with_chunks_not_rows(
    scenario: Scenario, volunteer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = scenario.project
    monkeypatch.setattr(exports, "EXPORT_CHUNK", 1000)
    small = {name: _queries(lambda run=run: run(project)) for name, run in EXPORTS.items()}
    _synthetic_project(project, volunteer, n_images=300)
    assert Image.objects.filter(project=project).count() == 315
    big = {name: _queries(lambda run=run: run(project)) for name, run in EXPORTS.items()}
    # 21 times the rows in one chunk: the very same number of queries.
    assert big == small
    monkeypatch.setattr(exports, "EXPORT_CHUNK", 50)
    chunked = {name: _queries(lambda run=run: run(project)) for name, run in EXPORTS.items()}
    extra_chunks = math.ceil(315 / 50) - 1
    for name in EXPORTS:
        # A few queries per extra chunk (the coco export reads the images twice).
        assert big[name] < chunked[name] <= big[name] + 10 * extra_chunks, name


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def test_every_csv_export_neutralises_formula_prefixes(
    scenario: Scenario, ecologist: User, volunteer: User
) -> None:
    """Species, file, camera, sequence and user names starting like a formula are quoted."""
    Species.objects.filter(pk=scenario.fox.pk).update(name="@fox")
    Species.objects.filter(pk=scenario.agouti.pk).update(name="-agouti")
    User.objects.filter(pk=volunteer.pk).update(username="\tvic")
    images = list(Image.objects.filter(project=scenario.project).order_by("id"))
    for i, image in enumerate(images):
        image.file_name = f"{FORMULA_STARTS[i % 6]}img{i}.jpg"
        image.camera = "+cam"
        image.seq_id = "=SEQ" if "Agouti" in image.path else "\rSEQ"
    Image.objects.bulk_update(images, ["file_name", "camera", "seq_id"])
    client = _client(ecologist)
    slug = scenario.project.slug
    expected = {
        "export_csv": {
            "'@fox",
            "'-agouti",
            "'\tvic",
            *(f"'{i.file_name}" for i in images if i.crops.exists()),  # a row per crop
        },
        "export_images_csv": {"'+cam", "'=SEQ", "'\rSEQ", *(f"'{i.file_name}" for i in images)},
        "export_events_csv": {"'+cam", "'=SEQ", "'\rSEQ", "'@fox"},
    }
    for name, quoted in expected.items():
        rows = list(csv.reader(io.StringIO(_body(client.get(reverse(name, args=[slug]))))))
        cells = {c for row in rows[1:] for c in row}
        assert not [c for c in cells if c.startswith(FORMULA_STARTS)], name
        assert quoted <= cells, (name, quoted - cells)


# --- attributes -------------------------------------------------------------------------------


def add_attributes(scenario: Scenario, admin: User) -> dict[str, int]:
    """An admin's review ticks attributes on A1 and F1 (the species stay; two votes are needed
    by now, so a volunteer's changed vote would leave them pending); the machine predicts
    attributes for A6 and F2 and for the fox event."""
    project, crops = scenario.project, scenario.crops
    ids = dict(project.attributes.values_list("name", "id"))
    for name, species, ticked in (
        ("A1", scenario.agouti, ["eating", "standing"]),
        ("F1", scenario.fox, ["moving"]),
    ):
        label_review(
            project=project,
            crop_id=crops[name].pk,
            user=admin,
            kind="species",
            species_id=species.pk,
            attributes=[ids[n] for n in ticked],
        )
    machine = {
        "A6": {"standing": 0.2, "moving": 0.9, "eating": 0.7},
        "F2": {"moving": 0.6, "resting": 0.5},
    }
    for name, probs in machine.items():
        Prediction.objects.filter(classifier=scenario.classifier, crop=crops[name]).update(
            attributes={str(ids[n]): p for n, p in probs.items()}
        )
    EventPrediction.objects.filter(event="SEQ75179").update(
        attributes={str(ids["moving"]): 0.8, str(ids["eating"]): 0.1}
    )
    return ids


def aligned(row: dict[str, str]) -> dict[str, str]:
    """{species: its attributes} from the ';'-aligned species and attributes columns."""
    return dict(zip(row["species"].split(";"), row["attributes"].split(";"), strict=True))


def test_crop_rows_carry_human_machine_and_final_attributes(
    scenario: Scenario, admin_user: User
) -> None:
    add_attributes(scenario, admin_user)
    rows = {
        int(r["crop_id"]): r
        for r in table(EXPORT_HEADER, export_crop_rows(project=scenario.project))
    }
    crops = scenario.crops

    def cells(name: str) -> tuple[str, str, str]:
        row = rows[crops[name].pk]
        return row["attributes_human"], row["attributes_machine"], row["attributes"]

    # Project order (standing before eating), whatever order they were ticked in.
    assert cells("A1") == ("standing;eating", "", "standing;eating")
    assert cells("F1") == ("moving", "", "moving")
    # Machine: p > 0.5 only (resting at exactly 0.5 is no).
    assert cells("A6") == ("", "moving:0.90;eating:0.70", "moving;eating")
    assert cells("F2") == ("", "moving:0.60", "moving")
    assert cells("A2") == ("", "", "")  # not an animal
    assert cells("F3") == ("", "", "")  # a machine label without an attribute head


def test_image_and_event_rows_align_attributes_with_species(
    scenario: Scenario, admin_user: User
) -> None:
    add_attributes(scenario, admin_user)
    crops = scenario.crops
    images = {
        int(r["image_id"]): r
        for r in table(IMAGE_HEADER, export_image_rows(project=scenario.project))
    }
    assert aligned(images[crops["A1"].image_id]) == {"agouti": "standing+eating"}
    # F2's image: two fox crops, one predicted moving: the union.
    assert aligned(images[crops["F2"].image_id]) == {"red fox": "moving"}
    assert aligned(images[crops["F3"].image_id]) == {"red fox": ""}
    events = {
        r["event_id"]: r for r in table(EVENT_HEADER, export_event_rows(project=scenario.project))
    }
    assert aligned(events["SEQ75520"]) == {"agouti": "standing+eating", "red fox": "moving+eating"}
    assert aligned(events["SEQ75179"]) == {"red fox": "moving"}
    assert events["SEQ75179"]["event_machine_attributes"] == "moving:0.80"
    assert events["SEQ75520"]["event_machine_attributes"] == ""


def test_coco_annotations_carry_attributes(scenario: Scenario, admin_user: User) -> None:
    add_attributes(scenario, admin_user)
    document = json.loads("".join(export_coco_json(project=scenario.project)))
    annotations = {a["id"]: a for a in document["annotations"]}
    crops = scenario.crops
    names = list(scenario.project.attributes.values_list("name", flat=True))
    human = annotations[f"crop-{crops['A1'].pk}"]
    assert human["attributes"] == {n: n in ("standing", "eating") for n in names}
    assert "attributes_conf" not in human
    machine = annotations[f"crop-{crops['A6'].pk}"]
    assert machine["attributes"] == {n: n in ("moving", "eating") for n in names}
    assert machine["attributes_conf"] == {"standing": 0.2, "moving": 0.9, "eating": 0.7}
    # Nothing recorded or predicted: no attributes claimed either way.
    assert "attributes" not in annotations[f"crop-{crops['F3'].pk}"]
    assert "attributes" not in annotations[f"crop-{crops['A3'].pk}"]  # unknown


def test_images_without_capture_time_say_so(scenario: Scenario) -> None:
    project = scenario.project
    timed = Image.objects.filter(project=project, seq_id="SEQ75179")
    timed.update(taken_at="2021-06-01T10:00:00Z", time_source="exif_offset")
    rows = table(IMAGE_HEADER, export_image_rows(project=project))
    by_seq = {(r["seq_id"], r["taken_at"] != "", r["time_source"]) for r in rows}
    assert by_seq == {("SEQ75179", True, "exif_offset"), ("SEQ75520", False, "none")}
    coco = json.loads("".join(export_coco_json(project=project)))
    dated = {i["seq_id"]: "datetime" in i for i in coco["images"]}
    assert dated == {"SEQ75179": True, "SEQ75520": False}


def test_higher_taxa_and_scientific_names_are_kept_in_the_exports(
    scenario: Scenario, admin_user: User
) -> None:
    """A crop people decided as a higher taxon is exported under its name (COCO: its own
    category, with the rank); categories carry the scientific name where one is known."""
    project, crops = scenario.project, scenario.crops
    mammal = Species.objects.create(project=project, name="mammal", rank="class", position=9)
    Species.objects.filter(pk=scenario.fox.pk).update(
        scientific_name="Vulpes vulpes", parent=mammal
    )
    Project.objects.filter(pk=project.pk).update(votes_per_crop=1)
    project.refresh_from_db()
    labels_import(
        project=project,
        crop_ids=[crops["F3"].pk],
        user=admin_user,
        kind="species",
        species_id=mammal.pk,
    )
    document = json.loads("".join(export_coco_json(project=project)))
    categories = {c["name"]: c for c in document["categories"]}
    assert categories["red fox"]["scientific_name"] == "Vulpes vulpes"
    assert categories["red fox"]["rank"] == "species"
    assert categories["mammal"]["rank"] == "class" and "scientific_name" not in categories["mammal"]
    by_id = {a["id"]: a for a in document["annotations"]}
    f3 = by_id[f"crop-{crops['F3'].pk}"]
    assert (f3["category_id"], f3["classification_method"]) == (categories["mammal"]["id"], "human")
    rows = table(EXPORT_HEADER, export_crop_rows(project=project))
    f3_row = next(r for r in rows if r["crop_id"] == str(crops["F3"].pk))
    assert f3_row["final_label"] == "mammal"


def test_exports_name_each_images_deployment(ingested_project: Project) -> None:
    """The crops and images CSV gain deployment_id; COCO's location is the deployment."""
    from projects.services_deployments import deployments_import

    deployments_import(
        project=ingested_project,
        text="deploymentID,latitude,longitude,deploymentStart,deploymentEnd,folder\n"
        "fox-ridge,1,2,2000-01-01T00:00:00Z,2030-01-01T00:00:00Z,images/Red_Fox\n",
    )
    images = table(IMAGE_HEADER, export_image_rows(project=ingested_project))
    expected = {
        r["image_file"]: "fox-ridge" if "Red_Fox" in r["image_file"] else "" for r in images
    }
    assert {r["image_file"]: r["deployment_id"] for r in images} == expected
    assert "fox-ridge" in expected.values() and "" in expected.values()
    crops = table(EXPORT_HEADER, export_crop_rows(project=ingested_project))
    assert crops and all(r["deployment_id"] == expected[r["image_file"]] for r in crops)
    document = json.loads("".join(export_coco_json(project=ingested_project)))
    for entry in document["images"]:
        image = Image.objects.get(pk=int(entry["id"]))
        assert entry["location"] == (expected[image.file_name] or image.camera)
