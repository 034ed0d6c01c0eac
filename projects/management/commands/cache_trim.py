from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from projects.storage import stored_is_local
from projects.storage_cache import cache_trim


class Command(BaseCommand):
    help = (
        "Trim this worker's cache of stored files (TRAPWISE_CACHE_DIR) to "
        "TRAPWISE_CACHE_MAX_BYTES, least recently used first, and remove leftovers of killed "
        "processes. Safe to run while workers run, and from several machines' cron at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-bytes", type=int, default=None, help="cap for this run (default: the setting)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if stored_is_local():
            self.stdout.write("TRAPWISE_STORAGE=local: there is no cache to trim")
            return
        result = cache_trim(max_bytes=options["max_bytes"])
        self.stdout.write(
            f"cache held {result.total_bytes} bytes; evicted {result.evicted} entries "
            f"({result.evicted_bytes} bytes); removed {result.leftovers} leftovers"
        )
