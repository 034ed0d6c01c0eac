"""The empties check, the box page (add, redraw, drop) and the admins' count corrections:
services, views and their refusals, the effort estimate and the exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage

from activelearn.models import CountCorrection, EmptyCheck
from activelearn.selectors_empties import empty_checks_summary
from activelearn.services.empties import CheckError, empty_check_answer, empty_sample_draw
from annotator.camtrapdp import PackageOptions, camtrap_dp_write
from annotator.exports import (
    EVENT_HEADER,
    EXPORT_HEADER,
    export_crop_rows,
    export_event_rows,
)
from annotator.exports_coco import export_coco_json
from annotator.selectors import effort_saved_estimate, pipeline_counts
from detector.models import Crop, Detection
from embeddings.pipeline import CROPS_EMBED_TASK
from projects.models import Image, Project, QueuedTask, Species
from tests.annotator.test_camtrapdp import read_csv, unpack
from tests.annotator.test_exports import _body

pytestmark = pytest.mark.django_db


@pytest.fixture
def photos(project: Project, sample_dir: Path) -> list[Image]:
    """Six real images, detected and found empty, on two cameras (4 and 2), events of two."""
    files = sorted((sample_dir / "images").rglob("*.JPG"))[:6]
    now = timezone.now()
    images = []
    for i, path in enumerate(files):
        with PILImage.open(path) as opened:
            width, height = opened.size
        images.append(
            Image.objects.create(
                project=project,
                path=str(path),
                file_name=f"{i}.jpg",
                width=width,
                height=height,
                camera="cam-a" if i < 4 else "cam-b",
                seq_id=f"seq-{i // 2}",
                taken_at=datetime(2024, 5, 1, 12, 0, i, tzinfo=UTC),
                detected_at=now,
                detector_version="test 1",
                is_empty=True,
                count=0,
            )
        )
    Species.objects.get_or_create(project=project, name="red fox")
    return images


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _box(**kw: object) -> dict[str, object]:
    return {"x": "0.1", "y": "0.2", "w": "0.3", "h": "0.4", **kw}


def _state(image: Image) -> tuple[object, ...]:
    image.refresh_from_db()
    return (
        Detection.objects.filter(image=image).count(),
        Crop.objects.filter(image=image, active=True).count(),
        image.count,
        image.is_empty,
        QueuedTask.objects.count(),
    )


# --- the sample and the answers ----------------------------------------------------------------


def test_sample_is_stratified_by_camera_and_never_repeats(
    photos: list[Image], project: Project, admin_user: User
) -> None:
    checks = empty_sample_draw(project=project, user=admin_user, size=3, seed=2)
    assert sorted(c.camera for c in checks) == ["cam-a", "cam-a", "cam-b"]
    assert all(c.seed == 2 and c.drawn_by_id == admin_user.pk for c in checks)
    more = empty_sample_draw(project=project, user=admin_user, size=10, seed=3)
    assert len(more) == 3  # what was left
    assert {c.image_id for c in checks} | {c.image_id for c in more} == {i.pk for i in photos}
    with pytest.raises(CheckError):
        empty_sample_draw(project=project, user=admin_user, size=0)


def test_answers_give_the_missed_rate_and_a_second_answer_is_refused(
    photos: list[Image], project: Project, admin_user: User, volunteer: User
) -> None:
    checks = empty_sample_draw(project=project, user=admin_user, size=4, seed=1)
    for check, animal in zip(checks, (True, False, False, False), strict=True):
        empty_check_answer(project=project, check_id=check.pk, user=volunteer, has_animal=animal)
    with pytest.raises(CheckError):
        empty_check_answer(
            project=project, check_id=checks[0].pk, user=admin_user, has_animal=False
        )
    rate, waiting = empty_checks_summary(project=project)
    assert (rate.checked, rate.missed, rate.rate, waiting) == (4, 1, 0.25, 0)
    assert rate.low == pytest.approx(0.0456, abs=1e-3) and rate.high == pytest.approx(
        0.6994, abs=1e-3
    )
    # The effort estimate credits the empties at the measured accuracy, not the detector's word.
    project.seconds_per_image = 3600.0
    counts = pipeline_counts(project=project)
    taken = effort_saved_estimate(project=project, counts=counts)
    measured = effort_saved_estimate(project=project, counts=counts, missed=rate)
    assert taken.hours == pytest.approx(6.0) and taken.empty_accuracy is None
    assert measured.empty_accuracy == 0.75 and measured.hours == pytest.approx(6 * 0.75)
    assert "6 empty images x 0.750 measured empty accuracy = 4.5 filtered out" in measured.formula()
    assert measured.as_json()["empty_credited"] == pytest.approx(4.5)


def test_empties_page_answer_flow_and_refusals(
    photos: list[Image], project: Project, admin_user: User, volunteer: User, ecologist: User
) -> None:
    url = reverse("empties", args=[project.slug])
    assert _client(ecologist).get(url).status_code == 404  # labellers only
    admin = _client(admin_user)
    assert (
        admin.post(reverse("empty_sample", args=[project.slug]), {"size": "x"}).status_code == 400
    )
    assert (
        _client(volunteer)
        .post(reverse("empty_sample", args=[project.slug]), {"size": 2})
        .status_code
        == 404
    )
    assert EmptyCheck.objects.count() == 0
    assert admin.post(reverse("empty_sample", args=[project.slug]), {"size": 2}).status_code == 302
    check = EmptyCheck.objects.order_by("id").first()
    assert check is not None
    client = _client(volunteer)
    page = client.get(url).text
    assert f'name="check_id" value="{check.pk}"' in page and 'id="missed-rate-none"' in page
    answer = reverse("empty_answer", args=[project.slug])
    for bad in ({"check_id": check.pk, "answer": "maybe"}, {"check_id": "x", "answer": "no"}):
        assert client.post(answer, bad).status_code == 400
    check.refresh_from_db()
    assert check.has_animal is None
    response = client.post(answer, {"check_id": check.pk, "answer": "yes"})
    assert response.status_code == 302
    assert response["Location"] == (
        reverse("image_boxes", args=[project.slug, check.image_id]) + "?from=empties"
    )
    assert client.post(answer, {"check_id": check.pk, "answer": "no"}).status_code == 400
    check.refresh_from_db()
    assert (check.has_animal, check.answered_by_id) == (True, volunteer.pk)
    # Until its box is drawn, the empties page lists the image.
    boxes = reverse("image_boxes", args=[project.slug, check.image_id])
    assert f'href="{boxes}?from=empties"' in client.get(url).text.split('id="unboxed"')[1]
    assert (
        client.post(reverse("box_add", args=[project.slug, check.image_id]), _box()).status_code
        == 302
    )
    assert 'id="unboxed"' not in client.get(url).text
    # The data page's block shows the rate with its interval.
    html = _client(admin_user).get(reverse("project_data", args=[project.slug])).text
    assert 'id="missed-rate">1.000<' in html and 'id="missed-low">0.207<' in html


# --- boxes -------------------------------------------------------------------------------------


def test_drawn_box_is_a_human_crop_queued_for_embedding(
    photos: list[Image], project: Project, volunteer: User
) -> None:
    image = photos[0]
    client = _client(volunteer)
    response = client.post(reverse("box_add", args=[project.slug, image.pk]), _box())
    assert response.status_code == 302
    detection = Detection.objects.get(image=image)
    assert (detection.drawn_by_id, detection.detector_version) == (volunteer.pk, "human")
    assert (detection.x, detection.y, detection.w, detection.h) == (0.1, 0.2, 0.3, 0.4)
    crop = Crop.objects.get(detection=detection)
    assert crop.active and (Path(settings.MEDIA_ROOT) / crop.file).is_file()
    with PILImage.open(Path(settings.MEDIA_ROOT) / crop.file) as cut:
        assert cut.size[0] < image.width  # cut from the box, not the whole frame
    image.refresh_from_db()
    assert (image.count, image.is_empty) == (1, False)
    assert list(QueuedTask.objects.values_list("name", "args")) == [
        (CROPS_EMBED_TASK, [project.pk])
    ]
    page = client.get(reverse("image_boxes", args=[project.slug, image.pk])).text
    assert "drawn by vic" in page and f'id="drop-{detection.pk}"' in page
    # A threshold change re-derives crops: a person's box stays whatever the threshold.
    project.detection_threshold = 1.0
    project.min_box_pixels = 10_000
    project.save()
    from detector.services import crops_rederive

    crops_rederive(project=project)
    crop.refresh_from_db()
    assert crop.active


@pytest.mark.parametrize(
    "body",
    [
        _box(x="1.2"),  # outside the image
        _box(x="0.8", w="0.3"),  # runs off the right edge
        _box(y="0.9", h="0.2"),  # runs off the bottom
        _box(w="0"),  # zero size
        _box(h="-0.1"),
        _box(x="abc"),  # not a number
        _box(w="nan"),
        _box(h="inf"),
        _box(x="١"),  # not ASCII
        {"x": "0.1", "y": "0.1", "w": "0.1"},  # missing
        _box(w="0.0000001"),  # under a pixel
        _box(replaces="999999"),  # no such box
    ],
)
def test_bad_boxes_are_refused_with_400_and_change_nothing(
    photos: list[Image], project: Project, volunteer: User, body: dict[str, object]
) -> None:
    image = photos[0]
    before = _state(image)
    response = _client(volunteer).post(reverse("box_add", args=[project.slug, image.pk]), body)
    assert response.status_code == 400, body
    assert response["Content-Type"].startswith("text/plain")
    assert _state(image) == before


def test_boxes_are_for_labellers_of_the_project_only(
    photos: list[Image], project: Project, ecologist: User, outsider: User
) -> None:
    image = photos[0]
    for user in (ecologist, outsider):
        client = _client(user)
        assert (
            client.post(reverse("box_add", args=[project.slug, image.pk]), _box()).status_code
            == 404
        )
        assert client.get(reverse("image_boxes", args=[project.slug, image.pk])).status_code == 404
    assert Detection.objects.count() == 0


def test_redraw_replaces_and_drop_removes_a_box_keeping_the_rows(
    photos: list[Image], project: Project, volunteer: User, admin_user: User
) -> None:
    image = photos[1]
    machine = Detection.objects.create(
        image=image, x=0.0, y=0.0, w=0.9, h=0.9, confidence=0.9, detector_version="md 5"
    )
    from detector.services import crops_rederive

    crops_rederive(project=project)
    old_crop = Crop.objects.get(detection=machine)
    client = _client(volunteer)
    add = reverse("box_add", args=[project.slug, image.pk])
    # "box is wrong": redraw it.
    assert client.post(add, _box(replaces=machine.pk)).status_code == 302
    machine.refresh_from_db()
    assert machine.dropped_by_id == volunteer.pk and machine.dropped_at is not None
    new = Detection.objects.get(replaces=machine)
    assert new.drawn_by_id == volunteer.pk
    old_crop.refresh_from_db()
    assert not old_crop.active  # kept (its labels too), no longer counted
    image.refresh_from_db()
    assert image.count == 1
    # Redrawing a dropped box again is refused.
    before = _state(image)
    assert client.post(add, _box(replaces=machine.pk)).status_code == 400
    assert _state(image) == before
    # "more animals than boxes": add one.
    assert client.post(add, _box(x="0.5", y="0.5", w="0.2", h="0.2")).status_code == 302
    image.refresh_from_db()
    assert image.count == 2
    # The crops CSV says who drew a box (the dropped one, unlabelled, is not exported).
    rows = [dict(zip(EXPORT_HEADER, r, strict=True)) for r in export_crop_rows(project=project)]
    by_crop = {r["crop_id"]: r for r in rows}
    assert old_crop.pk not in by_crop
    assert (by_crop[new.crop.pk]["box_drawn_by"], by_crop[new.crop.pk]["box_dropped_by"]) == (
        "vic",
        "",
    )
    # Drop the new one (no animal there after all).
    drop = reverse("box_drop", args=[project.slug, image.pk, new.pk])
    assert client.post(drop).status_code == 302
    assert client.post(drop).status_code == 400  # already dropped
    image.refresh_from_db()
    assert image.count == 1 and Detection.objects.filter(image=image).count() == 3
    # A box of another image cannot be dropped through this one.
    other = reverse("box_drop", args=[project.slug, photos[2].pk, machine.pk])
    assert client.post(other).status_code == 404


# --- counts ------------------------------------------------------------------------------------


def test_admins_correct_event_counts_and_the_exports_say_so(
    photos: list[Image], project: Project, admin_user: User, volunteer: User, tmp_path: Path
) -> None:
    fox = project.species.get(name="red fox")
    image = photos[2]  # event seq-1
    url = reverse("count_correct", args=[project.slug, image.pk])
    assert _client(volunteer).post(url, {"species_id": fox.pk, "count": 3}).status_code == 404
    admin = _client(admin_user)
    other = Species.objects.create(
        project=Project.objects.create(name="Other", slug="other"), name="x"
    )
    for bad in (
        {"species_id": fox.pk, "count": "-1"},
        {"species_id": fox.pk, "count": "two"},
        {"species_id": fox.pk, "count": "100000"},
        {"species_id": other.pk, "count": "2"},  # another project's species
        {"count": "2"},
    ):
        assert admin.post(url, bad).status_code == 400, bad
    assert CountCorrection.objects.count() == 0
    assert admin.post(url, {"species_id": fox.pk, "count": 2}).status_code == 302
    assert admin.post(url, {"species_id": fox.pk, "count": 3}).status_code == 302  # latest holds
    correction = CountCorrection.objects.get()
    assert (correction.event, correction.count, correction.corrected_by_id) == (
        "seq-1",
        3,
        admin_user.pk,
    )
    page = admin.get(reverse("image_boxes", args=[project.slug, image.pk])).text
    assert "red fox: 3 (corrected)" in page
    # Events CSV: the corrected count, and which species were corrected.
    rows = [dict(zip(EVENT_HEADER, r, strict=True)) for r in export_event_rows(project=project)]
    by_event = {r["event_id"]: r for r in rows}
    assert by_event["seq-1"]["species"] == "red fox" and by_event["seq-1"]["counts"] == "3"
    assert by_event["seq-1"]["counts_corrected"] == "red fox"
    assert by_event["seq-0"]["counts_corrected"] == "" and by_event["seq-0"]["counts"] == ""
    # COCO Camera Traps: the event's images carry the corrected counts.
    coco = json.loads("".join(export_coco_json(project=project)))
    corrected = {i["id"]: i.get("event_counts_corrected") for i in coco["images"]}
    assert corrected[str(image.pk)] == {"red fox": 3} and corrected[str(photos[0].pk)] is None
    # Camtrap DP: the event observation has the count, tagged corrected.
    out = io.BytesIO()
    camtrap_dp_write(project=project, options=PackageOptions(latitude=1.0, longitude=2.0), out=out)
    observations = read_csv(unpack(out.getvalue(), tmp_path / "package") / "observations.csv")
    fox_rows = [o for o in observations if o["eventID"] == "seq-1" and o["scientificName"]]
    assert [(o["count"], o["observationComments"]) for o in fox_rows] == [
        ("3", "count corrected by a project admin")
    ]
    assert "countCorrected:true" in fox_rows[0]["observationTags"]
    # The events CSV download carries the column.
    text = _body(admin.get(reverse("export_events_csv", args=[project.slug])))
    header = next(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert header[-1] == "counts_corrected"


def test_a_box_on_an_image_whose_file_is_gone_is_refused(
    photos: list[Image], project: Project, volunteer: User, tmp_path: Path
) -> None:
    image = photos[3]
    Image.objects.filter(pk=image.pk).update(path=str(tmp_path / "gone.jpg"))
    before = _state(image)
    response = _client(volunteer).post(reverse("box_add", args=[project.slug, image.pk]), _box())
    assert response.status_code == 400 and b"cannot be cut" in response.content
    assert _state(image) == before


def test_an_undetected_image_takes_no_box(
    photos: list[Image], project: Project, volunteer: User
) -> None:
    image = photos[4]
    Image.objects.filter(pk=image.pk).update(detected_at=None, is_empty=None, count=None)
    before = _state(image)
    response = _client(volunteer).post(reverse("box_add", args=[project.slug, image.pk]), _box())
    assert response.status_code == 400 and _state(image) == before
