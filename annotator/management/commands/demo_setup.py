from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from annotator.demo import DEMO_USERS, demo_ensure


class Command(BaseCommand):
    help = (
        "Create the demo users and the demo project from the bundled sample, run the pipeline "
        "and open the first round. Safe to run again. Passwords come from "
        "TRAPWISE_ADMIN_PASSWORD / TRAPWISE_VOLUNTEER_PASSWORD / TRAPWISE_ECOLOGIST_PASSWORD, "
        "or are generated, printed once and kept in var/demo-credentials.txt (mode 600)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        passwords = {
            name: os.environ.get(f"TRAPWISE_{name.upper()}_PASSWORD") or secrets.token_urlsafe(9)
            for name in DEMO_USERS
        }
        report = demo_ensure(passwords=passwords)
        credentials = Path(settings.VAR_DIR) / "demo-credentials.txt"
        if report.created_users:
            credentials.parent.mkdir(parents=True, exist_ok=True)
            with credentials.open("a") as fh:
                for name in report.created_users:
                    fh.write(f"{name} {passwords[name]}\n")
            credentials.chmod(0o600)
            self.stdout.write(
                self.style.SUCCESS("Demo users (shown once; also in var/demo-credentials.txt):")
            )
            for name in report.created_users:
                self.stdout.write(f"  {name:<10} password: {passwords[name]}")
        else:
            self.stdout.write(f"Demo users exist; their passwords are in {credentials}")
        if report.ingest is not None:
            ingest = report.ingest
            crops = ingest.detection.crops if ingest.detection else 0
            self.stdout.write(
                f"Project {report.project.name!r}: {ingest.images.added} images added "
                f"({ingest.images.already_present} already there), {crops} new crops, "
                f"embedding v{ingest.embedding_version}"
            )
        first = report.first_round
        if first is not None:
            # What the selection rule chose for this project, not a fixed name: a new
            # project's first round is usually random (activelearn.selection_rule).
            reason = f": {first.strategy_reason}" if first.strategy_reason else ""
            self.stdout.write(
                f"Round {first.number} opened, strategy {first.get_strategy_display()} "
                f"({first.strategy}){reason}."
            )
