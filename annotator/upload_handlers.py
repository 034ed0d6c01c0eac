"""The upload handler of browser imports: every file streamed to a temporary file on disk
(never held in memory), and the upload stopped once it passes its byte limit."""

from __future__ import annotations

from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler with a limit on the bytes of all files together.

    Past ``max_bytes`` it stops reading (the connection is reset) and sets ``exceeded``; the
    view then refuses the upload. The view checks the request's Content-Length first, so this
    is the guard for a body longer than it said.
    """

    def __init__(self, request: HttpRequest, *, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return super().receive_data_chunk(raw_data, start)
