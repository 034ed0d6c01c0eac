"""Request middleware: a database outage answers 503 "try again", not a 500 traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "The database is unavailable right now; try again in a moment."
# Seconds a client is asked to wait before it tries again.
RETRY_AFTER = 5
# Errors of a database that is down or restarting (connection refused, connection lost).
DATABASE_DOWN_ERRORS = (OperationalError, InterfaceError)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 with a message: JSON (``{"detail": ...}``) under /api/, a plain page otherwise.

    The page is rendered without the request's context, which would need the database.
    """
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
    else:
        html = render_to_string("database_unavailable.html", {"message": DATABASE_UNAVAILABLE})
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


class DatabaseUnavailableMiddleware:
    """Turn a view's database connection error into ``database_unavailable_response``.

    The transaction of the request was rolled back, so nothing was stored; Django drops the
    broken connection after the request and the next one connects afresh.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_DOWN_ERRORS):
            return None
        logger.warning(
            "database unavailable for %s %s: %s", request.method, request.path, exception
        )
        return database_unavailable_response(request)
