"""Histogram arithmetic: bucket deltas, merging, and quantiles computed the way Prometheus computes them.

A stored histogram part is `{"l": layout id, "b": [increments], "s": sum, "c": count}`: `b` holds the number of
observations per bucket (not cumulative), one per finite upper bound of the layout plus a last one for `+Inf`.
Layouts (the tuple of finite upper bounds) live in `HistogramLayout` rows; a histogram whose bucket boundaries
change (another vLLM version) simply gets another part with another layout.

`quantile` is Prometheus' `histogram_quantile`: find the bucket where the rank `q x count` falls and interpolate
linearly inside it, with 0 as the lower bound of the first bucket (when its upper bound is positive), and the
upper bound of the last finite bucket when the rank falls into `+Inf`.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Part = dict[str, Any]
INF = math.inf


def increments_from_cumulative(bounds: Sequence[float], cumulative: Sequence[float]) -> list[float]:
    """Cumulative bucket counts (one per finite bound, then +Inf) -> per-bucket counts."""
    out: list[float] = []
    previous = 0.0
    for value in cumulative:
        out.append(max(value - previous, 0.0))
        previous = max(previous, value)
    if len(out) != len(bounds) + 1:
        raise ValueError("a histogram needs one cumulative count per finite bound plus +Inf")
    return out


def merge_parts(parts: Iterable[Part]) -> list[Part]:
    """Add up parts with the same layout; parts with other layouts stay separate."""
    merged: dict[int, Part] = {}
    for part in parts:
        layout = part["l"]
        into = merged.get(layout)
        if into is None:
            merged[layout] = {"l": layout, "b": list(part["b"]), "s": part.get("s", 0.0), "c": part.get("c", 0.0)}
            continue
        buckets = into["b"]
        for index, value in enumerate(part["b"]):
            buckets[index] += value
        into["s"] += part.get("s", 0.0)
        into["c"] += part.get("c", 0.0)
    return [merged[key] for key in sorted(merged)]


def merge_histogram_maps(maps: Iterable[Mapping[str, list[Part]] | None]) -> dict[str, list[Part]]:
    """Merge rows' `histograms` JSON: {"e2e": [part, ...], ...}."""
    collected: dict[str, list[Part]] = {}
    for row in maps:
        if not row:
            continue
        for name, parts in row.items():
            collected.setdefault(name, []).extend(parts)
    return {name: merge_parts(parts) for name, parts in collected.items()}


def cumulative_buckets(parts: Sequence[Part], layouts: Mapping[int, Sequence[float]]) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) pairs, ending with +Inf, over the union of the parts' layouts.

    With a single layout this is the histogram itself. With several, each observation is counted at its own
    layout's upper bound: the cumulative count at a bound is the sum of each part's cumulative count at its
    largest bound not above it.
    """
    if len(parts) == 1 and len(parts[0]["b"]) == len(layouts[parts[0]["l"]]) + 1:  # the usual case: one layout
        single = list(itertools.accumulate(parts[0]["b"]))
        return [*zip(layouts[parts[0]["l"]], single[:-1], strict=True), (INF, single[-1])]
    bounds = sorted({bound for part in parts for bound in layouts[part["l"]]})
    result: list[tuple[float, float]] = []
    prepared = []
    for part in parts:
        own = list(layouts[part["l"]])
        running = 0.0
        cumulative = []
        for value in part["b"]:
            running += value
            cumulative.append(running)
        prepared.append((own, cumulative))
    for bound in bounds:
        total = 0.0
        for own, cumulative in prepared:
            # Index of the largest own bound <= bound.
            index = _largest_at_most(own, bound)
            if index >= 0:
                total += cumulative[index]
        result.append((bound, total))
    result.append((INF, sum(cumulative[-1] for _, cumulative in prepared)))
    return result


def _largest_at_most(bounds: Sequence[float], value: float) -> int:
    low, high = 0, len(bounds)
    while low < high:
        mid = (low + high) // 2
        if bounds[mid] <= value:
            low = mid + 1
        else:
            high = mid
    return low - 1


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs sorted by bound.

    None where Prometheus gives NaN: no observations, fewer than two buckets, or no +Inf bucket.
    """
    return quantiles([q], buckets)[0]


def quantiles(qs: Iterable[float], buckets: Sequence[tuple[float, float]]) -> list[float | None]:
    """`quantile` for several q over the same buckets, fixing the cumulative counts once (a chart draws p50, p95
    and p99 of each of hundreds of periods); each bucket is found by bisection, the counts never decreasing."""
    valid = len(buckets) >= 2 and math.isinf(buckets[-1][0])
    bounds = [bound for bound, _ in buckets] if valid else []
    # Cumulative counts must not decrease (Prometheus fixes this the same way), starting from 0.
    counts = list(itertools.accumulate((count for _, count in buckets), max, initial=0.0))[1:] if valid else []
    return [_quantile_at(q, bounds, counts) for q in qs]


def _quantile_at(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    if math.isnan(q):
        return None
    if q < 0:
        return -INF
    if q > 1:
        return INF
    if not counts or counts[-1] == 0:  # too few buckets, no +Inf bucket, or no observations
        return None
    rank = q * counts[-1]
    index = bisect.bisect_left(counts, rank)
    if index == len(counts) - 1:
        return bounds[-2]
    upper, count_at = bounds[index], counts[index]
    if index == 0 and upper <= 0:
        return upper
    lower, count_below = (0.0, 0.0) if index == 0 else (bounds[index - 1], counts[index - 1])
    in_bucket = count_at - count_below
    if in_bucket <= 0:
        return lower
    return lower + (upper - lower) * ((rank - count_below) / in_bucket)


def bucket_containing(value: float, bounds: Sequence[float]) -> tuple[float, float]:
    """The (lower, upper] interval of the layout that holds `value`."""
    lower = 0.0
    for bound in bounds:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, INF
