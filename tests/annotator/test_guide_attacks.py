"""Attacks on what a label records and on the field guide, over HTTP against a live server:
made-up or borrowed suggestion lists, a rank naming another species, absurd seconds, another
project's species in the guide. Each is refused (400) and stores nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Consensus, Label
from activelearn.services import round_start
from projects.models import Project, Role, Species
from projects.services import membership_set, project_create
from tests.conftest import PASSWORD, session_login

pytestmark = pytest.mark.django_db(transaction=True)


def _page(session: Any, url: str) -> tuple[int, str, list[int]]:
    text = session.get(url, timeout=30).text
    crop_id = int(re.search(r'name="crop_id" value="(\d+)"', text).group(1))  # type: ignore[union-attr]
    signed = re.search(r'name="suggestions" value="([^"]+)"', text).group(1)  # type: ignore[union-attr]
    ids = [int(i) for i in re.findall(r'value="species:(\d+)" data-key="\d"', text)]
    return crop_id, signed, ids


def test_forged_suggestions_rank_and_seconds_are_refused(
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    django_user_model: type[User],
) -> None:
    project = ingested_project
    round_start(project=project, user=admin_user, strategy="random", size=6)
    second = django_user_model.objects.create_user("val", password=PASSWORD)
    membership_set(project=project, user=second, role=Role.VOLUNTEER)
    url = f"{live_server.url}/p/{project.slug}/label/"
    mine, theirs = session_login(live_server.url, volunteer), session_login(live_server.url, second)
    crop_id, signed, ids = _page(mine, url)
    their_crop, their_signed, _ = _page(theirs, url)
    assert their_crop != crop_id
    base = {
        "crop_id": crop_id,
        "choice": f"species:{ids[0]}",
        "suggestions": signed,
        "csrfmiddlewaretoken": mine.cookies["csrftoken"],
    }
    attacks = [
        {"suggestions": ",".join(str(i) for i in reversed(ids))},  # made up
        {"suggestions": their_signed},  # another crop's list
        {"suggestions": signed.replace(":", ";", 1)},
        {"suggestion_rank": "2"},  # names another species than the answer
        {"suggestion_rank": "1", "choice": "not_animal"},
        {"suggestion_rank": "99"},
        {"seconds": "-0.1"},
        {"seconds": "1e308"},
        {"seconds": "NaN"},
        {"seconds": "3e3", "suggestion_rank": "x"},
    ]
    for attack in attacks:
        response = mine.post(url, data={**base, **attack}, allow_redirects=False, timeout=30)
        assert response.status_code == 400, (attack, response.text)
        assert response.headers["Content-Type"].startswith("text/plain")
    assert not Label.objects.exists() and not Consensus.objects.exists()
    # The page as sent is taken.
    response = mine.post(
        url, data={**base, "suggestion_rank": "1", "seconds": "7.5"}, allow_redirects=False
    )
    assert response.status_code == 302
    label = Label.objects.get()
    assert (label.suggestions, label.suggestion_rank, label.seconds) == (ids, 1, 7.5)


def test_field_guide_keeps_to_the_project(
    live_server: Any, ingested_project: Project, admin_user: User, volunteer: User, outsider: User
) -> None:
    other = project_create(name="Other traps", created_by=admin_user)
    wolf = Species.objects.create(project=other, name="wolf")
    fox = ingested_project.species.get(name="red fox")
    guide = f"{live_server.url}/p/{ingested_project.slug}/guide/"
    mine = session_login(live_server.url, volunteer)
    for value in (wolf.pk, "1 OR 1=1", "-1", str(2**64), "<script>"):
        response = mine.get(guide, params={"species": value}, timeout=30)
        assert response.status_code == 400, value
        assert "<script>" not in response.text or response.headers["Content-Type"].startswith(
            "text/plain"
        )
    assert mine.get(guide, params={"species": fox.pk}, timeout=30).status_code == 200
    stranger = session_login(live_server.url, outsider)
    assert stranger.get(guide, params={"species": fox.pk}, timeout=30).status_code == 404
    assert mine.get(f"{live_server.url}/p/{other.slug}/guide/", timeout=30).status_code == 404
