"""Benchmarks for `make bench`. Each writes var/bench/NAME.json; timings are never test assertions.

JSON fields: name, unit, value, baseline_name, baseline (measured in the same run), ratio
(value / baseline), params.
"""
