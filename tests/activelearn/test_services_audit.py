"""The audit stream in the services: audit crops drawn at round start, the live classifier's
prediction stored at first offer, and the audit setting."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth.models import User

from activelearn.models import RoundCrop
from activelearn.services import SettingsError, project_learning_update, round_start
from activelearn.services.rounds import audit_count, audit_interleave
from projects.models import Project

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "share,size,expected", [(0.1, 100, 10), (0.1, 20, 2), (0.1, 4, 0), (0.1, 5, 1), (0.5, 1, 0)]
)
def test_audit_count_rounds_half_up_and_leaves_the_strategy_a_crop(
    share: float, size: int, expected: int
) -> None:
    assert audit_count(share=share, size=size) == expected


def test_audit_interleave_draws_uniformly_from_unlabelled_crops_not_picked() -> None:
    unlabelled = np.ones(12, dtype=bool)
    unlabelled[[0, 1]] = False  # labelled: never drawn
    picks = [(2, None, False), (3, 0.5, False)]  # the strategy's: never drawn again
    counts = np.zeros(12)
    positions = np.zeros(4)
    for seed in range(3000):
        out = audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=2, seed=seed)
        assert [p for p in out if not p[2]] == picks  # the strategy's order is kept
        audited = [row for row, _, is_audit in out if is_audit]
        assert len(audited) == 2 and len(set(audited)) == 2
        counts[audited] += 1
        positions[[i for i, p in enumerate(out) if p[2]]] += 1
    assert counts[[0, 1, 2, 3]].sum() == 0
    # 8 crops, 2 drawn each time: each 750 times in expectation (sd about 20).
    assert np.all(np.abs(counts[4:] - 750) < 100)
    # Interleaved: every position of the round holds an audit crop about half the time.
    assert np.all(np.abs(positions - 1500) < 150)
    again = audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=2, seed=5)
    assert again == audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=2, seed=5)


def test_audit_interleave_takes_what_is_left() -> None:
    unlabelled = np.array([True, True, True])
    picks = [(0, None, False), (1, 1.0, False)]
    out = audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=5, seed=1)
    assert sorted(row for row, _, a in out if a) == [2]
    assert audit_interleave(picks=picks, unlabelled_mask=unlabelled, n_audit=0, seed=1) == picks


def test_round_start_marks_its_audit_share(ingested_project: Project, admin_user: User) -> None:
    ingested_project.audit_share = 0.3
    ingested_project.save(update_fields=["audit_share"])
    first = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=6)
    items = list(first.items.order_by("position"))
    assert len(items) == 6 and [i.position for i in items] == list(range(6))
    audit = [i for i in items if i.is_audit]
    assert len(audit) == 2
    assert all(i.distance is None for i in audit)
    picks = [(i.crop_id, i.is_audit) for i in items]
    first.delete()
    again = round_start(project=ingested_project, user=admin_user, strategy="k_center", size=6)
    assert [(i.crop_id, i.is_audit) for i in again.items.order_by("position")] == picks


def test_round_start_without_audit_share_marks_none(
    ingested_project: Project, admin_user: User
) -> None:
    ingested_project.audit_share = 0.0
    ingested_project.save(update_fields=["audit_share"])
    round_start(project=ingested_project, user=admin_user, strategy="random", size=8)
    assert RoundCrop.objects.count() == 8
    assert not RoundCrop.objects.filter(is_audit=True).exists()


def test_audit_share_setting_is_validated(ingested_project: Project) -> None:
    assert ingested_project.audit_share == pytest.approx(0.10)  # the default
    project_learning_update(
        project=ingested_project,
        first_round_strategy="random",
        target_accuracy=0.9,
        audit_share=0.2,
    )
    ingested_project.refresh_from_db()
    assert ingested_project.audit_share == pytest.approx(0.2)
    for bad in (-0.1, 0.51, float("nan")):
        with pytest.raises(SettingsError, match="audit share"):
            project_learning_update(
                project=ingested_project,
                first_round_strategy="random",
                target_accuracy=0.8,
                audit_share=bad,
            )
    ingested_project.refresh_from_db()
    assert ingested_project.audit_share == pytest.approx(0.2)
    assert ingested_project.target_accuracy == pytest.approx(0.9)
