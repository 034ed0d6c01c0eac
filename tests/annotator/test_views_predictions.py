"""Other tools' predictions: the admin's import page, and their suggestions on the label page."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from activelearn.models import Label, Round, RoundCrop
from activelearn.services import round_start
from annotator.exports import EXPORT_HEADER, export_crop_rows
from annotator.exports_coco import export_coco_json
from detector.models import Crop, ExternalModel, ExternalPrediction
from projects.models import Project
from tests.annotator.external_world import (
    MD_NAME,
    SN_VERSION,
    megadetector_file,
    speciesnet_file,
    with_external,
)
from tests.conftest import session_login

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _upload(document: object, name: str = "out.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, json.dumps(document).encode(), "application/json")


def _served_crop(text: str) -> Crop:
    match = re.search(r'name="crop_id" value="(\d+)"', text)
    assert match, "no crop on the page"
    return Crop.objects.select_related("image").get(pk=int(match.group(1)))


def _external_block(text: str) -> str:
    match = re.search(r'<div id="external-suggestions".*?</div>', text, re.S)
    assert match, "no external suggestions on the page"
    return match.group(0)


def test_imported_megadetector_and_speciesnet_predictions_are_on_the_label_page(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    """Done when: a MegaDetector file with classifications and a SpeciesNet file, made for the
    project's real sample images, put their predictions on the label page of the crop."""
    project = ingested_project
    round_start(project=project, user=admin_user, strategy="random", size=4)
    with_external(project)
    client = _client(volunteer)
    page = client.get(reverse("label", args=[project.slug])).text
    crop = _served_crop(page)
    block = _external_block(page)
    fox = "Red_Fox" in crop.image.file_name
    species = project.species.get(name="red fox" if fox else "agouti")
    md_score, sn_score = ("0.83", "0.91") if fox else ("0.77", "0.64")
    # Per box (MegaDetector classifier) and per image (SpeciesNet), each named with its source.
    assert re.search(
        rf"{species.name} <span class=\"confidence\">{md_score}</span> "
        rf"<span class=\"source\">{MD_NAME} sha256:",
        block,
    )
    assert re.search(
        rf"{species.name} <span class=\"confidence\">{sn_score}</span> "
        rf"<span class=\"source\">SpeciesNet {SN_VERSION} · whole image",
        block,
    )
    # Taken from there, the label records it like the classifier's suggestions.
    signed = re.search(r'name="suggestions" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    rank = re.search(
        rf'value="species:{species.pk}" data-rank="(\d+)" class="suggestion secondary external',
        block,
    ).group(1)  # type: ignore[union-attr]
    key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page).group(1)  # type: ignore[union-attr]
    response = client.post(
        reverse("label", args=[project.slug]),
        {
            "crop_id": crop.pk,
            "choice": f"species:{species.pk}",
            "idempotency_key": key,
            "suggestions": signed,
            "suggestion_rank": rank,
        },
    )
    assert response.status_code == 302
    label = Label.objects.get(crop=crop, user=volunteer)
    assert label.species_id == species.pk
    assert label.suggestions is not None
    assert label.suggestions[int(rank) - 1] == species.pk and label.suggestion_rank == int(rank)


def test_audit_crops_show_no_other_tool_either(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    open_round = round_start(project=project, user=admin_user, strategy="random", size=2)
    with_external(project)
    client = _client(volunteer)
    crop = _served_crop(client.get(reverse("label", args=[project.slug])).text)
    RoundCrop.objects.filter(round=open_round, crop=crop).update(is_audit=True)
    page = client.get(reverse("label", args=[project.slug])).text
    assert _served_crop(page).pk == crop.pk  # still held by the volunteer
    assert "external-suggestions" not in page
    RoundCrop.objects.filter(round=open_round, crop=crop).update(is_audit=False)
    assert "external-suggestions" in client.get(reverse("label", args=[project.slug])).text
    assert Round.objects.filter(pk=open_round.pk, status=Round.Status.OPEN).exists()


def test_admin_imports_on_the_page_and_sees_problems(
    ingested_project: Project, admin_user: User
) -> None:
    project = ingested_project
    client = _client(admin_user)
    url = reverse("predictions", args=[project.slug])
    assert "Nothing imported yet" in client.get(url).text
    response = client.post(url, {"file": _upload(speciesnet_file(project)), "format": "auto"})
    assert response.status_code == 302
    page = client.get(url).text
    assert "Imported SpeciesNet 4.0.1a" in page
    # The agouti's taxonomy string matches no species of this project (no scientific name).
    assert "1 labels match no species" in page and "central american agouti" in page
    model = ExternalModel.objects.get(project=project)
    assert model.imported_by == admin_user and model.source_file == "out.json"
    count = ExternalPrediction.objects.count()
    assert count == 2 * project.images.count()
    # Exported with their source: every crop's row names the model, its label and score.
    rows = [dict(zip(EXPORT_HEADER, r, strict=True)) for r in export_crop_rows(project=project)]
    assert rows and all(r["external_model"] == "SpeciesNet 4.0.1a" for r in rows)
    fox_rows = [r for r in rows if "Red_Fox" in str(r["image_file"])]
    assert fox_rows and {(r["external_label"], r["external_score"]) for r in fox_rows} == {
        ("red fox", 0.91)
    }
    coco = json.loads("".join(export_coco_json(project=project)))
    carried = [a["external_prediction"] for a in coco["annotations"] if "bbox" in a]
    assert carried and {c["model"] for c in carried} == {"SpeciesNet 4.0.1a"}
    # Again, now with the unmatched taxon added as a species: replaced, not doubled.
    client.post(url, {"file": _upload(speciesnet_file(project)), "create_species": "on"})
    assert "Replaced SpeciesNet 4.0.1a" in client.get(url).text
    assert ExternalPrediction.objects.count() == count
    assert project.species.filter(name="central american agouti").exists()


@pytest.mark.parametrize(
    "content,message",
    [
        (b"{", "not valid JSON"),
        (json.dumps({"images": []}).encode(), "no &#x27;classification_categories&#x27;"),
        (
            json.dumps(
                {
                    "predictions": [
                        {
                            "filepath": "/x/none.jpg",
                            "prediction": "a;b;c;d;e;f;g",
                            "prediction_score": 0.5,
                        }
                    ]
                }
            ).encode(),
            "nothing imported",
        ),
    ],
)
def test_a_refused_file_says_why_and_stores_nothing(
    project: Project, admin_user: User, content: bytes, message: str
) -> None:
    response = _client(admin_user).post(
        reverse("predictions", args=[project.slug]),
        {"file": SimpleUploadedFile("bad.json", content), "format": "auto"},
    )
    assert response.status_code == 400
    assert message in response.text
    assert not ExternalModel.objects.exists()


def test_only_admins_see_the_page(project: Project, volunteer: User, outsider: User) -> None:
    for user in (volunteer, outsider):
        assert _client(user).get(reverse("predictions", args=[project.slug])).status_code == 404


def test_outsider_and_volunteer_cannot_import_on_a_real_server(
    live_server: object, ingested_project: Project, volunteer: User, outsider: User
) -> None:
    """A well-formed file posted with a valid session and CSRF token by a non-admin: 404."""
    url = f"{live_server.url}{reverse('predictions', args=[ingested_project.slug])}"  # type: ignore[attr-defined]
    body = json.dumps(megadetector_file(ingested_project)).encode()
    for user in (outsider, volunteer):
        session = session_login(live_server.url, user)  # type: ignore[attr-defined]
        session.get(f"{live_server.url}/")  # type: ignore[attr-defined]
        response = session.post(
            url,
            data={"csrfmiddlewaretoken": session.cookies["csrftoken"], "format": "auto"},
            files={"file": ("md.json", body, "application/json")},
            headers={"Referer": url},
            allow_redirects=False,
        )
        assert response.status_code == 404, user.username
    assert not ExternalModel.objects.exists()


def test_event_page_shows_them_for_the_event(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    project = ingested_project
    round_start(project=project, user=admin_user, size=2, unit="event")
    with_external(project)
    page = _client(volunteer).get(reverse("label_event", args=[project.slug])).text
    block = _external_block(page)
    assert MD_NAME in block and f"SpeciesNet {SN_VERSION}" in block
    assert "data-rank" not in block  # the event's answer records no suggestions
