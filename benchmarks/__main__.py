"""Run every benchmark: `python -m benchmarks` (what `make bench` does)."""

from __future__ import annotations

from benchmarks import (
    classifier_loop,
    embedding_speed,
    export_stream,
    kcenter,
    offline_detector,
    reembed,
)


def main() -> None:
    kcenter.main()
    classifier_loop.main()
    export_stream.main()
    offline_detector.main()
    embedding_speed.main()
    reembed.main()


if __name__ == "__main__":
    main()
