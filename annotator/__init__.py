"""Trapwise web app: Django settings, URLs, WSGI and the Celery app live here."""

from annotator.celery import app as celery_app

__all__ = ["celery_app"]
