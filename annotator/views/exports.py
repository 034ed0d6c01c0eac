"""Ecologists' exports."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from annotator.csvsafe import csv_safe_row
from annotator.exports import EXPORT_HEADER, export_crop_rows
from annotator.selectors import (
    project_get_for_user,
)
from annotator.views._common import EXPORTERS


@login_required
@require_GET
def export_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    project, _ = project_get_for_user(slug=slug, user=request.user, roles=EXPORTERS)

    def lines() -> Iterator[str]:
        buffer = _LineBuffer()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_HEADER)
        yield buffer.pop()
        for row in export_crop_rows(project=project):
            writer.writerow(csv_safe_row(row))
            yield buffer.pop()

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-crops.csv"'
    return response


class _LineBuffer:
    """A file-like sink for csv.writer that hands back what was written since the last pop."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def pop(self) -> str:
        text, self._parts = "".join(self._parts), []
        return text
