"""Run every benchmark: `python -m benchmarks` (what `make bench` does)."""

from __future__ import annotations

from benchmarks import kcenter


def main() -> None:
    kcenter.main()


if __name__ == "__main__":
    main()
