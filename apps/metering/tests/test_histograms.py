"""Quantiles from bucket counts, computed as Prometheus' histogram_quantile does."""

from __future__ import annotations

import math

import pytest

from apps.metering.histograms import (
    bucket_containing,
    cumulative_buckets,
    increments_from_cumulative,
    merge_histogram_maps,
    merge_parts,
    quantile,
)

INF = math.inf


def test_quantile_interpolates_linearly_inside_the_bucket():
    # 10 observations <= 1, 10 more in (1, 2]: the median is the top of the first bucket, p75 half way up the second.
    buckets = [(1.0, 10.0), (2.0, 20.0), (INF, 20.0)]
    assert quantile(0.5, buckets) == pytest.approx(1.0)
    assert quantile(0.75, buckets) == pytest.approx(1.5)
    assert quantile(0.25, buckets) == pytest.approx(0.5)  # the first bucket starts at 0


def test_quantile_in_the_inf_bucket_is_the_last_finite_bound():
    buckets = [(1.0, 1.0), (2.0, 2.0), (INF, 10.0)]
    assert quantile(0.99, buckets) == 2.0


def test_quantile_without_observations_or_inf_bucket_is_none():
    assert quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    assert quantile(0.5, [(1.0, 3.0), (2.0, 3.0)]) is None
    assert quantile(0.5, [(INF, 3.0)]) is None


def test_quantile_out_of_range_follows_prometheus():
    buckets = [(1.0, 1.0), (INF, 1.0)]
    assert quantile(-0.1, buckets) == -INF
    assert quantile(1.1, buckets) == INF


def test_non_monotonic_counts_are_fixed_up_like_prometheus():
    # A scrape racing an observation can leave a higher bucket momentarily lower.
    assert quantile(0.5, [(1.0, 4.0), (2.0, 3.0), (INF, 4.0)]) == pytest.approx(0.5)


def test_worked_example():
    # le=0.1: 50, le=0.2: 70, +Inf: 110 (cumulative). p50: rank 55 falls in (0.1, 0.2], 5 of its 20 -> 0.125.
    # p20: rank 22 in (0, 0.1] -> 0.044. p80: rank 88 is past 0.2, in +Inf -> the last finite bound, 0.2.
    buckets = [(0.1, 50.0), (0.2, 70.0), (INF, 110.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.125)
    assert quantile(0.2, buckets) == pytest.approx(0.1 * 22 / 50)
    assert quantile(0.8, buckets) == pytest.approx(0.2)


def test_increments_and_merging_keep_every_observation():
    increments = increments_from_cumulative([1.0, 2.0], [3.0, 5.0, 6.0])
    assert increments == [3.0, 2.0, 1.0]
    a = {"l": 1, "b": [1.0, 0.0, 0.0], "s": 0.5, "c": 1.0}
    b = {"l": 1, "b": [0.0, 2.0, 1.0], "s": 4.0, "c": 3.0}
    c = {"l": 2, "b": [1.0, 0.0], "s": 9.0, "c": 1.0}
    merged = merge_parts([a, b, c])
    assert merged == [{"l": 1, "b": [1.0, 2.0, 1.0], "s": 4.5, "c": 4.0}, {"l": 2, "b": [1.0, 0.0], "s": 9.0, "c": 1.0}]
    assert merge_histogram_maps([{"e2e": [a]}, None, {"e2e": [b], "ttft": [c]}]) == {
        "e2e": [{"l": 1, "b": [1.0, 2.0, 1.0], "s": 4.5, "c": 4.0}],
        "ttft": [c],
    }


def test_parts_with_different_layouts_are_counted_at_their_own_bounds():
    layouts = {1: [1.0, 2.0], 2: [1.5]}
    parts = [{"l": 1, "b": [1.0, 1.0, 0.0], "s": 0, "c": 2.0}, {"l": 2, "b": [2.0, 0.0], "s": 0, "c": 2.0}]
    assert cumulative_buckets(parts, layouts) == [(1.0, 1.0), (1.5, 3.0), (2.0, 4.0), (INF, 4.0)]


def test_bucket_containing():
    assert bucket_containing(0.05, [0.1, 0.3]) == (0.0, 0.1)
    assert bucket_containing(0.1, [0.1, 0.3]) == (0.0, 0.1)
    assert bucket_containing(0.2, [0.1, 0.3]) == (0.1, 0.3)
    assert bucket_containing(9.0, [0.1, 0.3]) == (0.3, INF)


def test_one_layout_takes_the_short_way_to_the_same_cumulative_buckets_and_quantiles():
    import random

    from apps.metering.histograms import cumulative_buckets, quantile, quantiles

    rng = random.Random(5)
    layouts = {1: [0.01 * 2**i for i in range(12)]}
    for _ in range(100):
        part = {"l": 1, "b": [rng.randint(0, 9) for _ in range(13)], "s": 0, "c": 0}
        zeros = {"l": 1, "b": [0] * 13, "s": 0, "c": 0}
        short = cumulative_buckets([part], layouts)
        general = cumulative_buckets([part, zeros], layouts)  # two parts: the general merge
        assert short == general
        qs = [0.0, 0.5, 0.95, 0.99, 1.0]
        assert quantiles(qs, short) == [quantile(q, general) for q in qs]
