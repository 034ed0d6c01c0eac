"""Worker heartbeats (``WorkerHeartbeat``): how the cluster tells a worker gone for good from one
still busy with a long task.

Every worker writes its row every ``TRAPWISE_WORKER_HEARTBEAT_SECONDS`` from a daemon thread
(``Heartbeat``), started when the worker is ready (``projects/outbox_signals.py``). A thread and
not the worker's timer: workers run ``--pool=solo``, whose event loop, timer included, stands
still while a task runs, and a fine-tuning task runs for hours. ``tasks_requeue``
(``projects.taskqueue``) queues again the tasks started by a worker whose beat is older than
``TRAPWISE_WORKER_LOST_SECONDS``. A clean shutdown deletes the row.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from datetime import datetime

from django.db import connections
from django.utils import timezone

from projects.models import WorkerHeartbeat

logger = logging.getLogger(__name__)


def worker_heartbeat_write(
    *, node: str, started_at: datetime, queues: Sequence[str] = (), pid: int | None = None
) -> WorkerHeartbeat:
    """Record that the worker ``node`` (a Celery node name) is alive now; ``started_at`` is
    when this life of it started (a worker restarted under the same name replaces the row)."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        node=node,
        defaults={
            "seen_at": timezone.now(),
            "started_at": started_at,
            "pid": os.getpid() if pid is None else pid,
            "queues": ",".join(queues)[:500],
        },
    )
    return heartbeat


def worker_heartbeat_delete(*, node: str) -> None:
    """Forget the worker ``node``: it shut down cleanly, having finished or handed back its task.

    Its tasks still marked started, if any (a cold shutdown), then count as a worker's without
    a heartbeat: queued again once they started ``TRAPWISE_WORKER_LOST_SECONDS`` ago.
    """
    WorkerHeartbeat.objects.filter(node=node).delete()


class Heartbeat(threading.Thread):
    """A daemon thread that writes ``node``'s heartbeat every ``interval`` seconds until
    ``stop``. The first beat is ``beat()``'s to write, by whoever starts the thread, so that the
    row exists before the worker takes its first task.

    Django's connections are per thread: the thread's own is closed after every beat, so a
    database that restarted or was unreachable costs one missed beat (logged), never the thread.
    """

    def __init__(self, *, node: str, interval: float, queues: Sequence[str] = ()) -> None:
        super().__init__(name=f"heartbeat {node}", daemon=True)
        self.node = node
        self.interval = interval
        self.queues = tuple(queues)
        self.started_at = timezone.now()
        self._stopped = threading.Event()

    def beat(self) -> bool:
        """Write one heartbeat now; returns whether it was stored. Never raises."""
        try:
            worker_heartbeat_write(node=self.node, started_at=self.started_at, queues=self.queues)
        except Exception:  # the database may be down: the next beat tries again
            logger.exception(
                "could not write the heartbeat of %s; trying again in %s s",
                self.node,
                self.interval,
            )
            return False
        return True

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                self.beat()
                # Closed on the way out as well: this thread's connection is no one else's.
                connections.close_all()
        finally:
            connections.close_all()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop beating; waits up to ``timeout`` seconds for a beat being written."""
        self._stopped.set()
        if self.is_alive():
            self.join(timeout)
