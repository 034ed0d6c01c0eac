"""The label path under load (what `make loadtest` found): no lock that makes a project's
label submissions wait for each other, or for a retrain, when nothing is due."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from activelearn.models import Label
from activelearn.services import crop_claim_next, finetune_interval, label_submit, round_start
from embeddings.selectors import embedding_version_current
from projects.models import Project

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers); CI runs it")


def test_a_label_does_not_wait_for_the_project_row_while_a_retrain_holds_it(
    ingested_project: Project, admin_user: User, volunteer: User
) -> None:
    """A retrain's commit checks its rows' foreign keys (Django's are deferred to the commit):
    FOR KEY SHARE on the project row, then on every predicted crop. A label submission locks
    its crop, and used to lock the project row FOR UPDATE too (to ask whether fine-tuning is
    due): `make loadtest` saw the two deadlock, and the retrain was lost. With too few new
    labels for fine-tuning, a submission must not wait for the project row at all."""
    project = ingested_project
    open_round = round_start(project=project, user=admin_user, strategy="random", size=2)
    (crop,) = crop_claim_next(round_=open_round, user=volunteer)
    species = project.species.first()
    current = embedding_version_current(project=project)
    assert current is not None and species is not None
    # fine-tuning is not due
    assert finetune_interval(finetune_every=project.finetune_every, n_crops=current.n_crops) > 1
    holding, release = threading.Event(), threading.Event()

    def retrain_like() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # What the foreign-key check of a row that references the project takes.
                cursor.execute(
                    "SELECT 1 FROM annotator_project WHERE id = %s FOR KEY SHARE", [project.pk]
                )
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=retrain_like)
    holder.start()
    try:
        assert holding.wait(30)
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Waiting for the holder would raise after 2 s instead of hanging the test.
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            label = label_submit(
                project=project,
                crop_id=crop.pk,
                user=volunteer,
                kind="species",
                species_id=species.pk,
            )
    finally:
        release.set()
        holder.join(30)
    assert Label.objects.filter(pk=label.pk).exists()
