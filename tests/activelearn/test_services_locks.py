"""The lock functions of ``activelearn.services.locks``, and the rules the package keeps.

The locks under contention are tested on PostgreSQL (``test_services_concurrency``); here: what
each lock function returns, that each runs where it has nothing to lock (SQLite), that no other
module of the package takes a row lock of its own, and that none imports the Celery tasks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

import activelearn.services
from activelearn.models import Label, LabelKind, Round
from activelearn.services import labels_import, round_start
from activelearn.services.locks import (
    crops_lock,
    label_latest_lock,
    project_lock,
    retrain_lock,
    round_lock,
)
from detector.models import Crop
from projects.models import Project

PACKAGE = Path(activelearn.services.__file__).parent


@pytest.mark.django_db
def test_round_lock_says_whether_the_round_is_still_open(
    ingested_project: Project, admin_user: User
) -> None:
    open_round = round_start(project=ingested_project, user=admin_user, strategy="random", size=2)
    with transaction.atomic():
        assert round_lock(round_id=open_round.pk) is True
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.CLOSED)
    with transaction.atomic():
        assert round_lock(round_id=open_round.pk) is False


@pytest.mark.django_db
def test_label_latest_lock_finds_the_users_newest_label_not_undone(
    ingested_project: Project, volunteer: User, admin_user: User
) -> None:
    fox = ingested_project.species.get(name="red fox").pk
    first_crop, second_crop = Crop.objects.order_by("id")[:2]
    labels = [
        labels_import(
            project=ingested_project,
            crop_ids=[crop.pk],
            user=volunteer,
            kind=LabelKind.SPECIES,
            species_id=fox,
        )[0]
        for crop in (first_crop, second_crop)
    ]
    with transaction.atomic():
        assert label_latest_lock(project_id=ingested_project.pk, user_id=volunteer.pk) == labels[1]
    Label.objects.filter(pk=labels[1].pk).update(undone_at=timezone.now())
    with transaction.atomic():
        assert label_latest_lock(project_id=ingested_project.pk, user_id=volunteer.pk) == labels[0]
        assert label_latest_lock(project_id=ingested_project.pk, user_id=admin_user.pk) is None


@pytest.mark.django_db
def test_the_other_locks_run_where_there_is_nothing_to_lock(ingested_project: Project) -> None:
    crop_ids = sorted(Crop.objects.values_list("id", flat=True))
    with transaction.atomic():
        crops_lock(crop_ids=crop_ids)
        crops_lock(crop_ids=[])
        project_lock(project_id=ingested_project.pk)
    crops_lock(crop_ids=crop_ids)  # outside a transaction: a no-op
    with retrain_lock(project_id=ingested_project.pk), retrain_lock(project_id=0):
        pass


def test_only_the_locks_module_takes_row_locks() -> None:
    """The claim queue's ``FOR UPDATE SKIP LOCKED`` is a query that never waits, not a lock."""
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "locks.py":
            continue
        text = path.read_text()
        assert "pg_advisory" not in text, path.name
        for line in text.splitlines():
            if "select_for_update(" in line:
                assert path.name == "claims.py" and "skip_locked=True" in line, (path.name, line)


def test_detector_and_embeddings_take_row_locks_only_through_named_locks() -> None:
    """The box edits lock their image through ``projects.locks.image_lock``, whose place in the
    order ``activelearn.services.locks`` documents; no other module below takes a row lock."""
    root = PACKAGE.parent.parent
    for package in ("detector", "embeddings"):
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            assert "select_for_update(" not in path.read_text(), path


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = node.module or ""
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def test_no_service_module_imports_the_tasks_or_imports_inside_a_function() -> None:
    """Tasks are queued by name (``activelearn.tasks`` imports this package: a cycle), and no
    import hides in a function body to dodge one."""
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                assert not any(
                    name == "activelearn.tasks" or name.startswith("activelearn.tasks.")
                    for name in _imported(node)
                ), path.name
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, (path.name, node.name)
