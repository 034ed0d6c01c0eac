"""Issue 17 items 5 and 6: what a label records (suggestions shown, rank, seconds), the
effort estimate from measured seconds, the anchoring figures, and the field guide."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from activelearn.models import Consensus, Label, Prediction, Round
from activelearn.services import classifier_retrain, label_submit, labels_import, round_start
from activelearn.services.errors import LabelError
from annotator.api.services import api_token_create
from annotator.forms import suggestions_sign
from annotator.selectors_labels import (
    MEASURED_MIN,
    anchoring_get,
    field_guide_examples,
    label_seconds_measured,
)
from projects.models import Project, Species
from projects.services import project_create
from tests.annotator.test_views_labelling import _client, open_round
from tests.conftest import hold, label_by_truth, serve

__all__ = ["open_round"]  # a fixture, shared with the labelling page's tests

pytestmark = pytest.mark.django_db


def _shown(page: str) -> tuple[int, str, list[int]]:
    """The crop id, the signed suggestions and the suggested species ids (in order) of a page."""
    crop_id = int(re.search(r'name="crop_id" value="(\d+)"', page).group(1))  # type: ignore[union-attr]
    signed = re.search(r'name="suggestions" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    ids = [int(i) for i in re.findall(r'value="species:(\d+)" data-key="\d"', page)]
    return crop_id, signed, ids


def test_label_page_records_the_suggestions_rank_and_seconds(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    crop_id, signed, ids = _shown(client.get(url).text)
    assert ids and 'data-rank="1"' in client.get(url).text
    second = ids[1]
    response = client.post(
        url,
        {
            "crop_id": crop_id,
            "choice": f"species:{second}",
            "suggestions": signed,
            "suggestion_rank": "2",
            "seconds": "4.25",
        },
    )
    assert response.status_code == 302
    label = Label.objects.get()
    assert (label.crop_id, label.species_id) == (crop_id, second)
    assert (label.suggestions, label.suggestion_rank, label.seconds) == (ids, 2, 4.25)


def test_a_page_without_script_still_records_the_suggestions(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    crop_id, signed, ids = _shown(client.get(url).text)
    client.post(url, {"crop_id": crop_id, "choice": "unknown", "suggestions": signed})
    label = Label.objects.get()
    assert (label.suggestions, label.suggestion_rank, label.seconds) == (ids, None, None)


def test_bad_values_are_refused_and_store_nothing(
    open_round: Round, ingested_project: Project, volunteer: User, admin_user: User
) -> None:
    client = _client(volunteer)
    url = reverse("label", args=[ingested_project.slug])
    crop_id, signed, ids = _shown(client.get(url).text)
    other_crop = next(
        c for c in ingested_project.crops.values_list("id", flat=True) if c != crop_id
    )
    first = f"species:{ids[0]}"
    base = {"crop_id": crop_id, "choice": first, "suggestions": signed}
    cases = [
        ({"suggestions": ",".join(map(str, ids))}, "not the ones this server showed"),
        ({"suggestions": signed[:-2] + "xx"}, "not the ones this server showed"),
        (
            {"suggestions": suggestions_sign(crop_id=other_crop, species_ids=ids)},
            "shown with another crop",
        ),
        ({"suggestion_rank": "2"}, "is not the species of this label"),
        ({"suggestion_rank": "9"}, "is not a place in the"),
        ({"suggestion_rank": "0"}, "suggestion_rank"),
        ({"suggestion_rank": "1", "suggestions": ""}, "is not a place in the 0"),
        ({"suggestion_rank": "1", "choice": "unknown"}, "is not the species of this label"),
        ({"seconds": "-1"}, "seconds"),
        ({"seconds": "3600.5"}, "seconds"),
        ({"seconds": "nan"}, "seconds"),
        ({"seconds": "inf"}, "seconds"),
        ({"seconds": "٣"}, "seconds"),
    ]
    for change, message in cases:
        response = client.post(url, {**base, **change})
        assert response.status_code == 400, change
        assert message in response.text, (change, response.text)
    assert not Label.objects.exists() and not Consensus.objects.exists()


def test_the_service_refuses_suggestions_of_another_project(
    open_round: Round, ingested_project: Project, volunteer: User, admin_user: User
) -> None:
    other = project_create(name="Other traps", created_by=admin_user)
    wolf = Species.objects.create(project=other, name="wolf")
    fox = ingested_project.species.get(name="red fox")
    crop_id = open_round.items.order_by("position").values_list("crop_id", flat=True)[0]
    serve(ingested_project, volunteer, [crop_id])
    bad = [
        ({"suggestions": [fox.pk, wolf.pk]}, "not in project"),
        ({"suggestions": [fox.pk, fox.pk]}, "suggested twice"),
        ({"suggestions": [fox.pk, 2**70]}, "not in project"),
        ({"suggestions": list(range(1, 30))}, "at most 20"),
        ({"suggestion_rank": 1}, "is not a place"),
    ]
    for extra, message in bad:
        with pytest.raises(LabelError, match=message):
            label_submit(
                project=ingested_project,
                crop_id=crop_id,
                user=volunteer,
                kind="species",
                species_id=fox.pk,
                **extra,  # type: ignore[arg-type]
            )
    assert not Label.objects.exists()


def test_grid_records_the_servers_suggestion_and_shares_the_seconds(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, admin_user, crops[:6])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None
    round_start(project=ingested_project, user=admin_user, strategy="random", size=6)
    client = _client(volunteer)
    url = reverse("label_grid", args=[ingested_project.slug])
    page = client.get(url).text
    shown = [int(c) for c in re.findall(r'name="crop_ids" value="(\d+)"', page)]
    tops = {
        p.crop_id: int(p.top[0][0])
        for p in Prediction.objects.filter(classifier=classifier, crop_id__in=shown)
    }
    # Two crops with the same machine guess, labelled as that guess.
    by_top: dict[int, list[int]] = {}
    for crop_id in shown:
        by_top.setdefault(tops[crop_id], []).append(crop_id)
    species_id, pair = next((s, c[:2]) for s, c in by_top.items() if len(c) >= 2)
    response = client.post(
        url,
        {"crop_ids": pair, "choice": f"species:{species_id}", "seconds": "9", "suggestions": "1"},
    )
    assert response.status_code == 302
    labels = list(Label.objects.filter(crop_id__in=pair))
    assert len(labels) == 2
    for label in labels:
        assert (label.suggestions, label.suggestion_rank, label.seconds) == ([species_id], 1, 4.5)


def test_api_label_records_and_checks_what_was_shown(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    _, key = api_token_create(user=volunteer, name="test")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    crops = list(ingested_project.crops.order_by("id")[:2])
    hold(ingested_project, volunteer, [c.pk for c in crops])
    fox = ingested_project.species.get(name="red fox")
    agouti = ingested_project.species.get(name="agouti")
    url = f"/api/v1/projects/{ingested_project.slug}/labels"

    def post(body: dict[str, object]) -> object:
        return client.post(url, json.dumps(body), content_type="application/json")

    other = project_create(name="Other traps", created_by=admin_user)
    wolf = Species.objects.create(project=other, name="wolf")
    base: dict[str, object] = {"crop_id": crops[0].pk, "kind": "species", "species_id": fox.pk}
    cases: list[tuple[dict[str, object], int]] = [
        ({"suggestions": [agouti.pk, wolf.pk]}, 400),
        ({"suggestions": [agouti.pk, fox.pk], "suggestion_rank": 1}, 400),
        ({"suggestions": [agouti.pk], "suggestion_rank": 2}, 400),
        ({"seconds": -0.5}, 422),
        ({"seconds": 10_000}, 422),
        ({"suggestion_rank": 0}, 422),
    ]
    for extra, status in cases:
        response = post({**base, **extra})
        assert response.status_code == status, (extra, response.content)  # type: ignore[attr-defined]
    assert not Label.objects.exists()
    good = {"suggestions": [agouti.pk, fox.pk], "suggestion_rank": 2, "seconds": 3.5}
    response = post({**base, **good})
    assert response.status_code == 201  # type: ignore[attr-defined]
    data = response.json()  # type: ignore[attr-defined]
    assert (data["suggestions"], data["suggestion_rank"], data["seconds"]) == (
        [agouti.pk, fox.pk],
        2,
        3.5,
    )
    label = Label.objects.get()
    assert (label.suggestions, label.suggestion_rank, label.seconds) == (
        [agouti.pk, fox.pk],
        2,
        3.5,
    )


def test_effort_uses_the_measured_median_once_enough_labels_are_timed(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    ingested_project.seconds_per_image = 20.0
    ingested_project.save(update_fields=["seconds_per_image"])
    crops = list(ingested_project.crops.order_by("id"))
    labels_import(
        project=ingested_project,
        crop_ids=[c.pk for c in crops],
        user=volunteer,
        kind="unknown",
    )
    page = _client(admin_user).get(reverse("project_detail", args=[ingested_project.slug])).text
    assert "labels have been timed (0 so far)" in page
    # Timed votes: below the minimum the setting stays; from it on, the median is used.
    stored = list(Label.objects.order_by("id"))
    times = [float(i) for i in range(1, MEASURED_MIN + 2)]  # median of 1..31 is 16
    for label, seconds in zip(stored, times, strict=False):
        label.seconds = seconds
    Label.objects.bulk_update(stored, ["seconds"])
    measured = label_seconds_measured(project=ingested_project)
    n = min(len(stored), len(times))
    assert measured.n == n
    expected = sorted(times[:n])
    middle = expected[(n - 1) // 2 : n // 2 + 1]
    assert measured.median == pytest.approx(sum(middle) / len(middle))
    page = _client(admin_user).get(reverse("project_detail", args=[ingested_project.slug])).text
    if n >= MEASURED_MIN:
        assert f"the median time of {n} timed labels" in page
    else:
        assert f"({n} so far)" in page


def test_measured_median_even_and_odd(ingested_project: Project, volunteer: User) -> None:
    crops = list(ingested_project.crops.order_by("id")[:4])
    labels_import(
        project=ingested_project, crop_ids=[c.pk for c in crops], user=volunteer, kind="unknown"
    )
    stored = list(Label.objects.order_by("id"))
    for label, seconds in zip(stored, [8.0, 1.0, 3.0, 100.0], strict=True):
        label.seconds = seconds
    Label.objects.bulk_update(stored, ["seconds"])
    assert label_seconds_measured(project=ingested_project).median == 5.5
    stored[3].seconds = None
    stored[3].save(update_fields=["seconds"])
    got = label_seconds_measured(project=ingested_project)
    assert (got.n, got.median, got.enough) == (3, 3.0, False)


def test_anchoring_counts_votes_with_machine_suggestions(
    ingested_project: Project, admin_user: User, volunteer: User, django_user_model: type[User]
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, admin_user, crops[:6])
    assert classifier_retrain(project_id=ingested_project.pk) is not None
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=4)
    fox = ingested_project.species.get(name="red fox")
    agouti = ingested_project.species.get(name="agouti")
    ids = list(open_round.items.filter(is_audit=False).values_list("crop_id", flat=True)[:2])
    assert len(ids) == 2
    ingested_project.votes_per_crop = 2
    ingested_project.save(update_fields=["votes_per_crop"])
    second = django_user_model.objects.create_user("second")
    ingested_project.memberships.create(user=second, role="volunteer")
    serve(ingested_project, volunteer, ids)
    serve(ingested_project, second, ids)
    # Crop 1: both take the first suggestion (fox), decided fox: right.
    # Crop 2: the volunteer takes the first (fox), the second answers agouti: a dispute.
    for user, crop_id, species in [
        (volunteer, ids[0], fox),
        (second, ids[0], fox),
        (volunteer, ids[1], fox),
        (second, ids[1], agouti),
    ]:
        label_submit(
            project=ingested_project,
            crop_id=crop_id,
            user=user,
            kind="species",
            species_id=species.pk,
            suggestions=[fox.pk, agouti.pk],
            suggestion_rank=1 if species == fox else 2,
            seconds=2.0,
        )
    got = anchoring_get(project=ingested_project)
    assert got.labels == 4
    assert (got.took_first.hits, got.took_first.n) == (3, 4)
    # Only crop 1 is decided (by two votes): both its labels took the first, both right.
    assert (got.first_right.hits, got.first_right.n) == (2, 2)
    assert (got.machine_right.hits, got.machine_right.n) == (2, 2)
    # On the model page, which volunteers do not read.
    page = _client(admin_user).get(reverse("project_model", args=[ingested_project.slug])).text
    assert 'id="anchoring"' in page and "3 / 4" in page
    volunteer_page = _client(volunteer).get(reverse("project_model", args=[ingested_project.slug]))
    assert volunteer_page.status_code == 404 and 'id="anchoring"' not in volunteer_page.text


@pytest.mark.parametrize(
    "role,expected", [("admin", 200), ("volunteer", 200), ("ecologist", 404), ("outsider", 404)]
)
def test_field_guide_by_role(
    role: str,
    expected: int,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    ecologist: User,
    outsider: User,
) -> None:
    user = {"admin": admin_user, "volunteer": volunteer, "ecologist": ecologist}.get(role, outsider)
    fox = ingested_project.species.get(name="red fox")
    url = reverse("field_guide", args=[ingested_project.slug])
    assert _client(user).get(url, {"species": fox.pk}).status_code == expected


def test_field_guide_shows_decided_crops_with_high_agreement(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops)
    fox = ingested_project.species.get(name="red fox")
    decided = set(
        Consensus.objects.filter(species=fox, status="done").values_list("crop_id", flat=True)
    )
    assert decided
    # One fox crop the volunteers disagree on: pending or low agreement is no example.
    weak = sorted(decided)[0]
    Consensus.objects.filter(crop_id=weak).update(agreement=0.5)
    examples = field_guide_examples(project=ingested_project, species=fox)
    assert {c.crop_id for c in examples} == decided - {weak}
    url = reverse("field_guide", args=[ingested_project.slug])
    page = _client(volunteer).get(url, {"species": fox.pk}).text
    assert "Examples of red fox" in page
    for crop_id in decided - {weak}:
        assert reverse("crop_file", args=[ingested_project.slug, crop_id]) in page
    assert reverse("crop_file", args=[ingested_project.slug, weak]) not in page
    assert "Field guide" in _client(volunteer).get(url).text


def test_field_guide_refuses_a_species_of_another_project(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    other = project_create(name="Other traps", created_by=admin_user)
    wolf = Species.objects.create(project=other, name="wolf")
    url = reverse("field_guide", args=[ingested_project.slug])
    for value in (wolf.pk, "fox", "٣", 2**70):
        response = _client(volunteer).get(url, {"species": value})
        assert response.status_code == 400, value
        assert "species" in response.text


def test_label_page_links_each_suggestion_to_its_examples_and_has_picture_keys(
    open_round: Round, ingested_project: Project, volunteer: User
) -> None:
    page = _client(volunteer).get(reverse("label", args=[ingested_project.slug])).text
    _, _, ids = _shown(page)
    guide = reverse("field_guide", args=[ingested_project.slug])
    for species_id in ids:
        assert f'href="{guide}?species={species_id}"' in page
    keys = set(re.findall(r'data-key="([^"]+)"', page))
    assert {"[", "]", ",", ".", "="} <= keys
    # The picture keys are none of the labelling keys, nor can an attribute take them.
    assert not {"[", "]", ",", ".", "="} & {"1", "2", "3", "4", "5", "n", "u", "s", "z", "x", "/"}
    assert not {"[", "]", ",", ".", "="} & set(
        ingested_project.attributes.values_list("key", flat=True)
    )
    grid = _client(volunteer).get(reverse("label_grid", args=[ingested_project.slug])).text
    assert 'id="image-controls"' in grid and 'class="adjustable"' in grid


def test_effort_estimate_says_which_seconds_it_used(ingested_project: Project) -> None:
    from types import SimpleNamespace

    from django.template.loader import render_to_string

    from annotator.selectors import effort_saved_estimate
    from annotator.selectors_labels import MeasuredSeconds

    ingested_project.seconds_per_image = 20.0
    counts = SimpleNamespace(
        auto_acceptable=300, images_empty=60, threshold=0.9, classifier_number=2
    )
    few = effort_saved_estimate(
        project=ingested_project,
        counts=counts,  # type: ignore[arg-type]
        measured=MeasuredSeconds(MEASURED_MIN - 1, 5.0),
    )
    assert (few.seconds_per_image, few.seconds_source, few.hours) == (20.0, "setting", 2.0)
    enough = effort_saved_estimate(
        project=ingested_project,
        counts=counts,  # type: ignore[arg-type]
        measured=MeasuredSeconds(MEASURED_MIN, 5.0),
    )
    assert (enough.seconds_per_image, enough.seconds_source) == (5.0, "measured")
    assert enough.hours == pytest.approx(360 * 5.0 / 3600)
    assert enough.seconds_text() == f"the median time of {MEASURED_MIN} timed labels"
    assert enough.as_json()["seconds_source"] == "measured"
    html = render_to_string(
        "annotator/_effort.html", {"effort": enough, "role": "admin", "project": ingested_project}
    )
    assert f"the median time of {MEASURED_MIN} timed labels" in html
    assert "measured by the label pages" in html
    html = render_to_string(
        "annotator/_effort.html", {"effort": few, "role": "admin", "project": ingested_project}
    )
    assert f"until {MEASURED_MIN} labels have been timed ({MEASURED_MIN - 1} so far)" in html
