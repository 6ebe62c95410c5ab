"""Small statistics shared by the benchmarks: percentiles by linear interpolation, and the
one way a benchmark prints its result."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of durations given in seconds, in milliseconds rounded to 0.001."""
    ms = [v * 1000.0 for v in values_s]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3) if ms else math.nan,
    }


def report(result: Mapping[str, Any], as_json: bool) -> int:
    """Print ``result`` (one JSON line with ``as_json``, else one ``key: value`` a line) on
    stdout; returns the exit status 0."""
    if as_json:
        print(json.dumps(result))
    else:
        width = max((len(k) for k in result), default=0)
        for k, v in result.items():
            print(f"{k:>{width}}: {v}")
    return 0
