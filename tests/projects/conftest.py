"""Fixtures of the outbox tests (``test_taskqueue``, ``test_heartbeats``)."""

from __future__ import annotations

import time

import pytest
from kombu.exceptions import OperationalError as BrokerError

from activelearn import tasks


class FakeBroker:
    """Stands in for ``classifier_retrain_task.delay``: records what it is given, taking
    ``delay`` seconds (a broker round trip), or refuses everything while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.delay = 0.0
        self.sent: list[tuple[int, ...]] = []

    def __call__(self, *args: int) -> None:
        if self.down:
            raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        time.sleep(self.delay)
        self.sent.append(args)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(tasks.classifier_retrain_task, "delay", fake)
    return fake
