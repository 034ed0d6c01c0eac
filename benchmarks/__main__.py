"""Run every benchmark: `python -m benchmarks` (what `make bench` does)."""

from __future__ import annotations

from benchmarks import kcenter, offline_detector


def main() -> None:
    kcenter.main()
    offline_detector.main()


if __name__ == "__main__":
    main()
