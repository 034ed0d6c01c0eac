from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from activelearn.experiment import coco_split
from detector.cct import CctError, cct_read


def _ranks(raw: str) -> set[int]:
    """ "3" or "2,3" -> {2, 3}; CommandError unless every part is an integer >= 1."""
    try:
        ranks = {int(part) for part in raw.split(",") if part.strip()}
    except ValueError:
        raise CommandError(f"--test-seq-rank must be integers like 3 or 2,3, got {raw!r}") from None
    if not ranks or min(ranks) < 1:
        raise CommandError(f"--test-seq-rank needs ranks >= 1, got {raw!r}")
    return ranks


class Command(BaseCommand):
    help = (
        "Split a COCO Camera Traps file into a pool and a test file by whole capture "
        "sequences: within each category (a sequence's most annotated one) sequences are "
        "sorted by seq_id and ranked 1, 2, ...; the ranks in --test-seq-rank go to the test "
        "file, the rest to the pool. info, licences and categories are kept in both."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", type=Path, help="COCO Camera Traps JSON to split")
        parser.add_argument("--out-pool", type=Path, required=True)
        parser.add_argument("--out-test", type=Path, required=True)
        parser.add_argument(
            "--test-seq-rank", default="3", help="per-category sequence ranks for the test: 3, 2,3"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ranks = _ranks(options["test_seq_rank"])
        source: Path = options["source"]
        if options["out_pool"].resolve() == options["out_test"].resolve():
            raise CommandError("--out-pool and --out-test must be different files")
        try:
            document = cct_read(source)
        except CctError as exc:
            raise CommandError(str(exc)) from exc
        split = coco_split(document, test_ranks=ranks)
        for flag, part in (("out_pool", split.pool), ("out_test", split.test)):
            try:
                options[flag].write_text(json.dumps(part, indent=1) + "\n")
            except OSError as exc:
                raise CommandError(f"cannot write {options[flag]}: {exc}") from exc
        self.stdout.write(
            f"pool: {len(split.pool_sequences)} sequences, {len(split.pool['images'])} images "
            f"-> {options['out_pool']}\n"
            f"test: {len(split.test_sequences)} sequences, {len(split.test['images'])} images "
            f"-> {options['out_test']}"
        )
        if not split.test_sequences:
            self.stderr.write("warning: no sequence has a rank in --test-seq-rank; test is empty")
