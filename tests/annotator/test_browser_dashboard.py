"""The admin's dashboard in headless Chromium: start a round, watch it progress live, manage
members and merge two species."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from activelearn.models import Label, Round
from activelearn.services import labels_import
from projects.models import Project
from tests.conftest import browser_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_starts_a_round_and_sees_it_progress_live(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    page = browser_page
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/")
    page.wait_for_selector("text=No round is open")
    with page.expect_navigation():
        page.get_by_role("navigation", name="Project pages").get_by_role(
            "link", name="Rounds and labelling"
        ).click()
    assert page.locator(".project-nav [aria-current=page]").inner_text() == "Rounds and labelling"
    page.select_option("select[name=strategy]", "k_center")
    page.fill("input[name=size]", "3")
    with page.expect_navigation():
        page.click("button:has-text('Start round')")
    page.wait_for_selector("text=Round 1 started.")
    assert page.locator("#round-progress").inner_text().startswith("Round 1 (k-Center greedy)")
    assert page.locator("#round-count").inner_text() == "0 / 3"
    started = Round.objects.get(project=ingested_project)
    assert (started.strategy, started.size, started.items.count()) == ("k_center", 3, 3)

    # A volunteer labels one crop (straight in the database); the page was not reloaded when
    # its polling shows the new count.
    page.evaluate("window.notReloaded = true")
    first = started.items.order_by("position").first()
    assert first is not None
    species = ingested_project.species.get(name="agouti")
    labels_import(
        project=ingested_project,
        crop_ids=[first.crop_id],
        user=volunteer,
        kind="species",
        species_id=species.pk,
    )
    from playwright.sync_api import expect  # here: the browser_page fixture skips without it

    # expect(), not wait_for_function(): that evaluates its string with eval(), which the
    # page's Content-Security-Policy (script-src 'self') refuses.
    expect(page.locator("#round-count")).to_have_text("1 / 3", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("[data-count=labelled]").inner_text() == "1"


def test_admin_invites_and_merges_species(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
    outsider: User,
) -> None:
    page = browser_page
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/settings/")
    with page.expect_navigation():
        page.click("text=Members and roles")
    page.select_option("#invitation-create select[name=role]", "volunteer")
    with page.expect_navigation():
        page.click("#invitation-create button[type=submit]")
    link = page.input_value("#invitation-link")
    assert "/invite/" in link
    assert ingested_project.invitations.get().role == "volunteer"  # type: ignore[attr-defined]

    page.goto(f"{live_server.url}/p/{ingested_project.slug}/species/")
    page.fill("#species-add input[name=name]", "fox")
    with page.expect_navigation():
        page.click("#species-add button[type=submit]")
    page.wait_for_selector("text=Species 'fox' added.")
    fox = ingested_project.species.get(name="fox")
    red_fox = ingested_project.species.get(name="red fox")
    crop = ingested_project.crops.first()
    assert crop is not None
    labels_import(
        project=ingested_project,
        crop_ids=[crop.pk],
        user=volunteer,
        kind="species",
        species_id=fox.pk,
    )
    page.reload()
    page.select_option("#species-merge select[name=source]", label="fox")
    page.select_option("#species-merge select[name=target]", label="red fox")
    with page.expect_navigation():
        page.click("#species-merge button[type=submit]")
    page.wait_for_selector("text='fox' merged into 'red fox': 1 labels moved")
    assert not ingested_project.species.filter(name="fox").exists()
    label = Label.objects.get(crop=crop)
    assert label.species == red_fox
    assert page.locator("#species tbody tr").count() == ingested_project.species.count()


def test_admin_sees_metrics_rare_species_effort_and_starts_a_species_round(
    browser_page: Any,
    live_server: Any,
    ingested_project: Project,
    admin_user: User,
    volunteer: User,
) -> None:
    from activelearn.models import Prediction
    from activelearn.services import classifier_retrain
    from tests.conftest import label_by_truth

    crops = list(ingested_project.crops.select_related("image").order_by("id"))
    label_by_truth(ingested_project, volunteer, crops[:3] + crops[-3:])
    classifier = classifier_retrain(project_id=ingested_project.pk)
    assert classifier is not None and classifier.cv_metrics is not None
    target = (
        Prediction.objects.filter(classifier=classifier, crop__consensus__isnull=True)
        .select_related("species")[0]
        .species
    )
    page = browser_page
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/model/")
    for metric in ("top1", "f1_macro", "log_loss"):
        shown = page.locator(f"#metrics [data-metric={metric}]").inner_text()
        assert shown == f"{classifier.cv_metrics[metric]:.3f}", metric
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/")
    assert page.locator("#effort-formula").is_visible()
    assert "empty images filtered out" in page.locator("#effort-formula").inner_text()
    page.goto(f"{live_server.url}/p/{ingested_project.slug}/rounds/")
    n_species = ingested_project.species.count()
    assert page.locator("#rare-fewest-labels tbody tr").count() == min(5, n_species)
    assert page.locator("#rare-lowest-accuracy tbody tr").count() == 2  # the species labelled
    # The species list shows up only for the species strategy.
    assert not page.locator("#round-target-species").is_visible()
    page.select_option("#round-start select[name=strategy]", "species")
    assert page.locator("#round-target-species").is_visible()
    page.select_option("#round-start select[name=target_species]", label=target.name)
    page.fill("#round-start input[name=size]", "2")
    with page.expect_navigation():
        page.click("button:has-text('Start round')")
    page.wait_for_selector("text=Round 1 started.")
    strategy = page.locator("#round-strategy").inner_text()
    assert strategy == f"One species, for diversity: {target.name}"
    started = Round.objects.get(project=ingested_project)
    assert (started.strategy, started.target_species_id) == ("species", target.pk)


def test_a_jobs_problems_are_listed_and_redrawn_live(
    browser_page: Any, live_server: Any, project: Project, admin_user: User
) -> None:
    """A crops job that went on without an image lists it, with the worker that ran it, on the
    page and after the dashboard's polling redraws the list from status.json (the same
    markup)."""
    from django.utils import timezone
    from playwright.sync_api import expect  # here: the browser_page fixture skips without it

    from projects.models import Job

    def finished_job(name: str, worker: str) -> None:
        Job.objects.create(
            project=project,
            kind=Job.Kind.CROPS,
            status=Job.Status.DONE,
            total=3,
            done=3,
            started_at=timezone.now(),
            finished_at=timezone.now(),
            problems=[[name, "crops not cut: No such file or directory"]],
            worker=worker,
        )

    finished_job("cam1/a.jpg", "cpu@box-1")
    page = browser_page
    browser_login(page, live_server, admin_user)
    page.goto(f"{live_server.url}/p/{project.slug}/")
    problems = page.locator("#recent-jobs .job-problems")
    assert problems.count() == 1 and problems.locator("summary").inner_text() == "1 problem"
    assert "on cpu@box-1" in page.locator("#recent-jobs").inner_text()
    finished_job("cam2/b.jpg", "cpu@box-2")
    # expect(), not wait_for_function(): the page's CSP refuses the eval() behind the latter.
    expect(problems).to_have_count(2, timeout=15_000)
    page.locator("#recent-jobs .job-problems summary").first.click()
    redrawn = page.locator("#recent-jobs").inner_text()
    assert "cam2/b.jpg: crops not cut" in redrawn
    assert "on cpu@box-2" in redrawn and "on cpu@box-1" in redrawn  # which worker ran each
