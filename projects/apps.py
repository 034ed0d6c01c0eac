from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Trapwise projects"

    def ready(self) -> None:
        # The outbox's Celery signal handlers (task started / finished, requeue on worker start).
        from projects import outbox_signals  # noqa: F401
