"""A realistic platform for the dashboards' benchmark and demos (`manage.py dashboards_generate`).

Small tables (GPU types and prices, clusters, catalog models, teams, budgets, quotas, users, endpoints, operations,
quota requests) are made with the ORM. The big ones are written with set-based SQL (INSERT ... SELECT over
generate_series), in chunks of days:

- `UsageHour`: one row per running endpoint per completed UTC hour (a price change falls on an hour boundary, so
  there is exactly one price per hour). Traffic follows a daily and weekly cycle with noise and slow growth;
  replicas follow the load; idle GPU-seconds are hours (or parts of hours) without traffic.
- `UsageDay`: the same chunk's hours grouped by statement-zone day, endpoint and price, so that costs, GPU-seconds,
  tokens and requests of a day are exactly the sum of its hours.
- `UsageMinute`: the last two hours only (minute rows are kept 14 days, whatever the length of history).

Histograms use vLLM's bucket layouts (four `HistogramLayout` rows). An endpoint has a latency profile; an hour's
histogram is its request count spread over a mix of that profile and the next slower one (more of the slower one
under load). Request counts are rounded to two significant digits so that hour histograms come from a small
lookup table (a few thousand JSON documents) instead of being built per row. A day's histogram is the same mix
summed over its hours (equal to the merged hours up to rounding to 1/100 of a count).

`price_seconds` is exactly `rate x gpu_seconds` (numeric arithmetic in the database). `extend(days=N)` writes N
more days of history before the oldest day, for the endpoints that were running then, and touches nothing else.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import random  # synthetic data, not security
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from apps.accounts.models import User
from apps.catalog.models import CatalogModel
from apps.endpoints.models import Endpoint, Operation, QuotaRequest
from apps.inventory.models import Cluster, ClusterGpuInventory, GpuPrice, GpuType
from apps.metering.ingest import layout_ids
from apps.metering.models import UsageDay, UsageHour, UsageMinute
from apps.metering.rollup import day_bounds, local_day, statement_zone
from apps.teams.models import Budget, GpuQuota, Membership, Team

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
CHUNK_DAYS = 10
MINUTE_HOURS = 2

# vLLM's bucket bounds (0.x), per histogram we store.
BOUNDS: dict[str, tuple[float, ...]] = {
    "ttft": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0, 160.0, 640.0, 2560.0),
    "itl": (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0),
    "e2e": (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
            960.0, 1920.0, 7680.0),
    "queue": (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
              960.0, 1920.0, 7680.0),
}  # fmt: skip
# Median seconds per latency profile (0 fastest); endpoints use 0-4, and 5 is what profile 4 slows down to.
MEDIANS: dict[str, tuple[float, ...]] = {
    "ttft": (0.03, 0.07, 0.15, 0.35, 0.8, 2.0),
    "itl": (0.012, 0.02, 0.035, 0.06, 0.1, 0.2),
    "e2e": (0.7, 1.4, 2.8, 5.5, 11.0, 24.0),
    "queue": (0.05, 0.1, 0.2, 0.5, 1.5, 5.0),
}
SIGMA = {"ttft": 0.7, "itl": 0.45, "e2e": 0.6, "queue": 1.0}
PROFILES = 5
CONGESTION = (0.0, 0.08, 0.18, 0.32, 0.5)  # share of the slower profile, by congestion level
STOP_PERCENT = 86  # finished_reason="stop"; the rest "length"

GPUS = [  # sku, memory, hourly price, currency, price from the middle of the history (None: unchanged)
    ("H100-80GB", 80, Decimal("2.5000"), "USD", Decimal("2.7300")),
    ("A100-80GB", 80, Decimal("1.9000"), "USD", Decimal("1.7500")),
    ("L4-24GB", 24, Decimal("0.7100"), "USD", None),
    ("MI300X-192GB", 192, Decimal("2.2000"), "EUR", None),
]
MODELS = [  # name, source, billions of parameters, layers, hidden, heads, kv heads, quality (None: no score)
    ("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", 8, 32, 4096, 32, 8, "68.40"),
    ("llama-3.1-70b-instruct", "meta-llama/Llama-3.1-70B-Instruct", 70, 80, 8192, 64, 8, "83.60"),
    ("llama-3.2-3b-instruct", "meta-llama/Llama-3.2-3B-Instruct", 3, 28, 3072, 24, 8, None),
    ("mistral-7b-instruct", "mistralai/Mistral-7B-Instruct-v0.3", 7, 32, 4096, 32, 8, "60.10"),
    ("mixtral-8x7b-instruct", "mistralai/Mixtral-8x7B-Instruct-v0.1", 47, 32, 4096, 32, 8, "70.60"),
    ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", 7, 28, 3584, 28, 4, "74.20"),
    ("qwen2.5-72b-instruct", "Qwen/Qwen2.5-72B-Instruct", 72, 80, 8192, 64, 8, "86.10"),
    ("gemma-2-9b-it", "google/gemma-2-9b-it", 9, 42, 3584, 16, 8, None),
    ("phi-3-mini-instruct", "microsoft/Phi-3-mini-4k-instruct", 4, 32, 3072, 32, 32, None),
    ("deepseek-r1-distill-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32, 64, 5120, 40, 8, "79.90"),
]
TEAM_WORDS = ["search", "ads", "fraud", "support", "legal", "risk", "docs", "voice", "vision", "crm", "hr", "ops"]
# Endpoint states, cumulative share out of 1000.
STATES = [
    (Endpoint.State.READY, 860),
    (Endpoint.State.FAILED, 900),
    (Endpoint.State.PENDING_APPROVAL, 935),
    (Endpoint.State.UPDATING, 950),
    (Endpoint.State.PROVISIONING, 960),
    (Endpoint.State.APPROVED, 965),
    (Endpoint.State.DELETED, 990),
    (Endpoint.State.REJECTED, 1000),
]
HAS_USAGE = {Endpoint.State.READY, Endpoint.State.FAILED, Endpoint.State.UPDATING, Endpoint.State.DELETED}


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    first_day: dt.date | None = None
    last_day: dt.date | None = None


Say = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


# --- histogram lookup --------------------------------------------------------------------------------------


@functools.cache
def _fractions(name: str, profile: int) -> tuple[list[float], float]:
    """Share of observations per bucket (finite bounds, then +Inf) of a log-normal, and its mean."""
    mu, sigma = math.log(MEDIANS[name][profile]), SIGMA[name]

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2))))

    cumulative = [cdf(b) for b in BOUNDS[name]] + [1.0]
    shares = [cumulative[0]] + [b - a for a, b in itertools.pairwise(cumulative)]
    return shares, math.exp(mu + sigma**2 / 2)


def request_levels() -> list[int]:
    """Request counts with two significant digits: 1..99, then 100, 110, ... 990, 1000, 1100, ... 99,000,000."""
    levels = list(range(1, 100))
    for exponent in range(1, 7):
        levels.extend(m * 10**exponent for m in range(10, 100))
    return sorted(set(levels))


def lookup_rows(
    layouts: dict[str, int], wanted: list[tuple[int, int, int]]
) -> Iterator[tuple[int, int, int, str, str]]:
    """(profile, congestion, requests, reasons JSON, histograms JSON) for each wanted combination: `requests`
    observations, a share (by congestion) of them from the next slower profile."""
    by_mix: dict[tuple[int, int], list[int]] = {}
    for profile, congestion, requests in wanted:
        by_mix.setdefault((profile, congestion), []).append(requests)
    for (profile, congestion), levels in sorted(by_mix.items()):
        share = CONGESTION[congestion]
        mixes = []
        for name in BOUNDS:
            own, own_mean = _fractions(name, profile)
            slow, slow_mean = _fractions(name, profile + 1)
            mix = [(1 - share) * a + share * b for a, b in zip(own, slow, strict=True)]
            mixes.append((name, layouts[name], mix, (1 - share) * own_mean + share * slow_mean))
        for requests in sorted(levels):
            stop = requests * STOP_PERCENT // 100
            reasons = {k: v for k, v in (("stop", stop), ("length", requests - stop)) if v}
            histograms = {
                name: [{"l": layout, "b": [round(requests * m, 2) for m in mix], "s": round(requests * mean, 3),
                        "c": float(requests)}]
                for name, layout, mix, mean in mixes
            }  # fmt: skip
            yield profile, congestion, requests, json.dumps(reasons), json.dumps(histograms, separators=(",", ":"))


# --- SQL ---------------------------------------------------------------------------------------------------

# Requests rounded to two significant digits (the lookup's levels), 0 below half a request.
ROUND_REQUESTS = """CASE WHEN {x} < 0.5 THEN 0 WHEN {x} < 99.5 THEN round({x})::bigint
     ELSE (round({x} / power(10, floor(log({x})) - 1)) * power(10, floor(log({x})) - 1))::bigint END"""

HOUR_CHUNK = """
DROP TABLE IF EXISTS gen_hour;
CREATE TEMP TABLE gen_hour AS
WITH base AS (
    SELECT e.endpoint_id, e.team_id, e.profile, e.gpus_per_replica, e.min_r, e.max_r, e.prompt_avg, e.gen_avg,
           e.idle_share, e.e2e_mean, h.hour, p.rate, p.currency,
           least(e.base_rps * (
               0.15 + 0.85 * power(greatest(0, sin(pi() * (extract(hour FROM h.hour) + e.shift - 6) / 16)), 1.4))
               * CASE WHEN extract(isodow FROM h.hour + e.shift * interval '1 hour') >= 6 THEN 0.45 ELSE 1 END
               * greatest(0.35, 1 + 0.35 * extract(epoch FROM h.hour - %(now)s) / (365 * 86400))
               * (0.7 + 0.6 * random()), 270) AS rps,
           random() AS idle_draw
    FROM gen_ep e
    CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour')
        AS h(hour)
    JOIN gen_price p ON p.gpu_type_id = e.gpu_type_id AND h.hour >= p.valid_from AND h.hour < p.valid_until
    WHERE h.hour >= e.active_from AND h.hour < e.active_until
), shaped AS (
    SELECT b.*, CASE WHEN b.idle_draw < b.idle_share THEN 0 ELSE b.rps END AS served,
           least(b.rps / greatest(b.max_r * 2.0, 1), 1) AS load
    FROM base b
), counted AS (
    SELECT s.*, (ROUND_REQUESTS_3600) AS requests,
           least(4, greatest(0, floor((s.load - 0.45) * 9)))::int AS congestion,
           least(s.max_r, s.min_r + floor((s.max_r - s.min_r + 1) * least(s.load, 0.999)))::int AS replicas
    FROM shaped s
)
SELECT c.endpoint_id, c.team_id, c.hour, c.rate, c.currency, c.profile, c.congestion, c.requests,
       (c.requests * %(stop)s / 100)::bigint AS stop,
       (c.requests * (c.prompt_avg * (0.8 + 0.4 * random())))::bigint AS prompt_tokens,
       (c.requests * (c.gen_avg * (0.8 + 0.4 * random())))::bigint AS generation_tokens,
       c.replicas, c.replicas * c.gpus_per_replica AS gpus,
       c.replicas * c.gpus_per_replica * 3600 AS gpu_seconds,
       CASE WHEN c.requests = 0 THEN c.replicas * c.gpus_per_replica * 3600
            ELSE c.replicas * c.gpus_per_replica * 60 * floor(60 * greatest(0, 0.12 - c.load) / 0.12 * 0.7)::int
       END AS idle_gpu_seconds,
       CASE WHEN c.requests = 0 THEN 0 ELSE least(0.97, 0.08 + 0.85 * c.load) END AS kv,
       CASE WHEN c.requests = 0 THEN 0 ELSE c.served * c.e2e_mean END AS running,
       CASE WHEN c.requests = 0 THEN 0 ELSE greatest(0, c.load - 0.6) * 12 * c.replicas END AS waiting
FROM counted c;
""".replace("ROUND_REQUESTS_3600", ROUND_REQUESTS.format(x="s.served * 3600"))

SAMPLES = 240  # gauge samples (and scrapes) per hour: every 15 s

INSERT_HOURS = f"""
INSERT INTO metering_usagehour (endpoint_id, team_id, hour, requests, requests_by_reason, prompt_tokens,
    generation_tokens, histograms, running_sum, waiting_sum, kv_usage_sum, gauge_samples, running_max, waiting_max,
    kv_usage_max, metric_replicas, scrapes, replicas, gpus, gpu_seconds, rate, currency, price_seconds,
    idle_gpu_seconds, minutes)
SELECT g.endpoint_id, g.team_id, g.hour, g.requests, coalesce(l.reasons, '{{}}'::jsonb), g.prompt_tokens,
       g.generation_tokens, coalesce(l.histograms, '{{}}'::jsonb), round((g.running * {SAMPLES})::numeric, 2),
       round((g.waiting * {SAMPLES})::numeric, 2), round((g.kv * {SAMPLES})::numeric, 3),
       CASE WHEN g.requests = 0 THEN 0 ELSE {SAMPLES} END, ceil(g.running * 1.6), ceil(g.waiting * 2),
       CASE WHEN g.requests = 0 THEN 0 ELSE least(1, round((g.kv + 0.08)::numeric, 3)) END,
       CASE WHEN g.requests = 0 THEN 0 ELSE g.replicas END, {SAMPLES},
       g.replicas, g.gpus, g.gpu_seconds, g.rate, g.currency, g.rate * g.gpu_seconds, g.idle_gpu_seconds, 60
FROM gen_hour g
LEFT JOIN gen_lookup l ON l.profile = g.profile AND l.congestion = g.congestion AND l.requests = g.requests
"""  # noqa: S608 - built from constants; values are parameters

# Days from the same chunk of hours: sums of the hours; histograms as the same mix, summed.
INSERT_DAYS = f"""
WITH days AS (
    SELECT g.endpoint_id, min(g.team_id) AS team_id, (g.hour AT TIME ZONE %(zone)s)::date AS day, g.rate,
           g.currency, min(g.profile) AS profile, sum(g.requests) AS requests, sum(g.stop) AS stop,
           sum(g.prompt_tokens) AS prompt_tokens, sum(g.generation_tokens) AS generation_tokens,
           sum(round((g.running * {SAMPLES})::numeric, 2)) AS running_sum,
           sum(round((g.waiting * {SAMPLES})::numeric, 2)) AS waiting_sum,
           sum(round((g.kv * {SAMPLES})::numeric, 3)) AS kv_usage_sum,
           sum(CASE WHEN g.requests = 0 THEN 0 ELSE {SAMPLES} END) AS gauge_samples,
           max(ceil(g.running * 1.6)) AS running_max, max(ceil(g.waiting * 2)) AS waiting_max,
           max(CASE WHEN g.requests = 0 THEN 0 ELSE least(1, round((g.kv + 0.08)::numeric, 3)) END) AS kv_usage_max,
           max(CASE WHEN g.requests = 0 THEN 0 ELSE g.replicas END) AS metric_replicas,
           count(*) * {SAMPLES} AS scrapes, max(g.replicas) AS replicas, max(g.gpus) AS gpus,
           sum(g.gpu_seconds) AS gpu_seconds, sum(g.idle_gpu_seconds) AS idle_gpu_seconds, count(*) * 60 AS minutes,
           sum(g.requests * (1 - (%(congestion)s::float8[])[g.congestion + 1])) AS own,
           sum(g.requests * (%(congestion)s::float8[])[g.congestion + 1]) AS slow
    FROM gen_hour g
    GROUP BY g.endpoint_id, day, g.rate, g.currency
)
INSERT INTO metering_usageday (endpoint_id, team_id, day, requests, requests_by_reason, prompt_tokens,
    generation_tokens, histograms, running_sum, waiting_sum, kv_usage_sum, gauge_samples, running_max, waiting_max,
    kv_usage_max, metric_replicas, scrapes, replicas, gpus, gpu_seconds, rate, currency, price_seconds,
    idle_gpu_seconds, minutes)
SELECT d.endpoint_id, d.team_id, d.day, d.requests,
       CASE WHEN d.requests = 0 THEN '{{}}'::jsonb
            ELSE jsonb_strip_nulls(jsonb_build_object(
                'stop', nullif(d.stop, 0), 'length', nullif(d.requests - d.stop, 0))) END,
       d.prompt_tokens, d.generation_tokens,
       CASE WHEN d.requests = 0 THEN '{{}}'::jsonb ELSE (
           SELECT jsonb_object_agg(t.name, jsonb_build_array(jsonb_build_object(
               'l', t.layout,
               'b', (SELECT jsonb_agg(round((d.own * u.a + d.slow * u.b)::numeric, 2) ORDER BY u.i)
                     FROM unnest(t.own, t.slow) WITH ORDINALITY AS u(a, b, i)),
               's', round((d.own * t.own_mean + d.slow * t.slow_mean)::numeric, 3),
               'c', d.requests::float8)))
           FROM gen_template t WHERE t.profile = d.profile) END,
       d.running_sum, d.waiting_sum, d.kv_usage_sum, d.gauge_samples, d.running_max, d.waiting_max, d.kv_usage_max,
       d.metric_replicas, d.scrapes, d.replicas, d.gpus, d.gpu_seconds, d.rate, d.currency,
       d.rate * d.gpu_seconds, d.idle_gpu_seconds, d.minutes
FROM days d
"""  # noqa: S608 - built from constants; values are parameters

# Older history without hours (`extend` beyond its hourly days): one row per endpoint and day, straight away.
DIRECT_DAYS = f"""
WITH base AS (
    SELECT e.endpoint_id, e.team_id, e.profile, e.gpus_per_replica, e.min_r, e.max_r, e.prompt_avg, e.gen_avg,
           e.idle_share, e.e2e_mean, d.day, p.rate, p.currency,
           extract(epoch FROM ((d.day + 1)::timestamp AT TIME ZONE %(zone)s)
                              - (d.day::timestamp AT TIME ZONE %(zone)s))::int / 3600 AS hours,
           least(e.base_rps * 0.5 * CASE WHEN extract(isodow FROM d.day) >= 6 THEN 0.45 ELSE 1 END
               * greatest(0.35, 1 + 0.35 * extract(epoch FROM (d.day::timestamp AT TIME ZONE %(zone)s) - %(now)s)
                                    / (365 * 86400))
               * (0.8 + 0.4 * random()), 270) AS rps
    FROM gen_ep e
    CROSS JOIN LATERAL (SELECT g::date AS day FROM generate_series(%(first)s::date, %(last)s::date, interval '1 day')
                        AS g) d
    JOIN gen_price p ON p.gpu_type_id = e.gpu_type_id
         AND (d.day::timestamp AT TIME ZONE %(zone)s) + interval '12 hours' >= p.valid_from
         AND (d.day::timestamp AT TIME ZONE %(zone)s) + interval '12 hours' < p.valid_until
), counted AS (
    SELECT b.*, ({ROUND_REQUESTS.format(x="b.rps * 3600 * b.hours * (1 - b.idle_share)")}) AS requests,
           least(b.rps * 2 / greatest(b.max_r * 2.0, 1), 1) AS load
    FROM base b
), shaped AS (
    SELECT c.*, least(4, greatest(0, floor((c.load - 0.55) * 9)))::int AS congestion,
           least(c.max_r, c.min_r + floor((c.max_r - c.min_r + 1) * least(c.load, 0.999)))::int AS replicas
    FROM counted c
), priced AS (
    SELECT s.*, (s.hours * 1800 * s.gpus_per_replica * (s.min_r + s.replicas))::bigint AS gpu_seconds
    FROM shaped s
)
INSERT INTO metering_usageday (endpoint_id, team_id, day, requests, requests_by_reason, prompt_tokens,
    generation_tokens, histograms, running_sum, waiting_sum, kv_usage_sum, gauge_samples, running_max, waiting_max,
    kv_usage_max, metric_replicas, scrapes, replicas, gpus, gpu_seconds, rate, currency, price_seconds,
    idle_gpu_seconds, minutes)
SELECT s.endpoint_id, s.team_id, s.day, s.requests, coalesce(l.reasons, '{{}}'::jsonb),
       (s.requests * s.prompt_avg * (0.9 + 0.2 * random()))::bigint,
       (s.requests * s.gen_avg * (0.9 + 0.2 * random()))::bigint, coalesce(l.histograms, '{{}}'::jsonb),
       CASE WHEN s.requests = 0 THEN 0 ELSE round((s.rps * s.e2e_mean * {SAMPLES} * s.hours)::numeric, 2) END,
       CASE WHEN s.requests = 0 THEN 0
            ELSE round((greatest(0, s.load - 0.6) * 12 * s.replicas * {SAMPLES} * s.hours)::numeric, 2) END,
       CASE WHEN s.requests = 0 THEN 0
            ELSE round((least(0.97, 0.08 + 0.85 * s.load) * {SAMPLES} * s.hours)::numeric, 3) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE {SAMPLES} * s.hours END,
       CASE WHEN s.requests = 0 THEN 0 ELSE ceil(s.rps * 2 * s.e2e_mean * 1.6) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE ceil(greatest(0, s.load - 0.6) * 24 * s.replicas) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE least(1, round((0.16 + 0.85 * s.load)::numeric, 3)) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE s.replicas END, {SAMPLES} * s.hours,
       s.replicas, s.replicas * s.gpus_per_replica, s.gpu_seconds, s.rate, s.currency, s.rate * s.gpu_seconds,
       CASE WHEN s.requests = 0 THEN s.gpu_seconds ELSE (s.gpu_seconds * s.idle_share)::bigint END, s.hours * 60
FROM priced s
LEFT JOIN gen_lookup l ON l.profile = s.profile AND l.congestion = s.congestion AND l.requests = s.requests
"""  # noqa: S608 - built from constants; values are parameters

INSERT_MINUTES = f"""
WITH base AS (
    SELECT e.endpoint_id, e.team_id, e.profile, e.gpus_per_replica, e.min_r, e.max_r, e.prompt_avg, e.gen_avg,
           e.idle_share, e.e2e_mean, m.minute, p.rate, p.currency,
           least(e.base_rps * (
               0.15 + 0.85 * power(greatest(0, sin(pi() * (extract(hour FROM m.minute) + e.shift - 6) / 16)), 1.4))
               * CASE WHEN extract(isodow FROM m.minute + e.shift * interval '1 hour') >= 6 THEN 0.45 ELSE 1 END
               * (0.6 + 0.8 * random()), 270) AS rps,
           random() AS idle_draw
    FROM gen_ep e
    CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                               interval '1 minute') AS m(minute)
    JOIN gen_price p ON p.gpu_type_id = e.gpu_type_id AND m.minute >= p.valid_from AND m.minute < p.valid_until
    WHERE m.minute >= e.active_from AND m.minute < e.active_until
), counted AS (
    SELECT b.*, ({ROUND_REQUESTS.format(x="(CASE WHEN b.idle_draw < b.idle_share THEN 0 ELSE b.rps END) * 60")})
               AS requests,
           least(b.rps / greatest(b.max_r * 2.0, 1), 1) AS load
    FROM base b
), shaped AS (
    SELECT c.*, least(4, greatest(0, floor((c.load - 0.45) * 9)))::int AS congestion,
           least(c.max_r, c.min_r + floor((c.max_r - c.min_r + 1) * least(c.load, 0.999)))::int AS replicas
    FROM counted c
)
INSERT INTO metering_usageminute (endpoint_id, team_id, minute, requests, requests_by_reason, prompt_tokens,
    generation_tokens, histograms, running_sum, waiting_sum, kv_usage_sum, gauge_samples, running_max, waiting_max,
    kv_usage_max, metric_replicas, scrapes, replicas, gpus, gpu_seconds, rate, currency)
SELECT s.endpoint_id, s.team_id, s.minute, s.requests, coalesce(l.reasons, '{{}}'::jsonb),
       (s.requests * s.prompt_avg * (0.8 + 0.4 * random()))::bigint,
       (s.requests * s.gen_avg * (0.8 + 0.4 * random()))::bigint, coalesce(l.histograms, '{{}}'::jsonb),
       CASE WHEN s.requests = 0 THEN 0 ELSE round((s.rps * s.e2e_mean * 4)::numeric, 2) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE round((greatest(0, s.load - 0.6) * 48 * s.replicas)::numeric, 2) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE round((least(0.97, 0.08 + 0.85 * s.load) * 4)::numeric, 3) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE 4 END,
       CASE WHEN s.requests = 0 THEN 0 ELSE ceil(s.rps * s.e2e_mean * 1.6) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE ceil(greatest(0, s.load - 0.6) * 24 * s.replicas) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE least(1, round((0.16 + 0.85 * s.load)::numeric, 3)) END,
       CASE WHEN s.requests = 0 THEN 0 ELSE s.replicas END, 4,
       s.replicas, s.replicas * s.gpus_per_replica, s.replicas * s.gpus_per_replica * 60, s.rate, s.currency
FROM shaped s
LEFT JOIN gen_lookup l ON l.profile = s.profile AND l.congestion = s.congestion AND l.requests = s.requests
"""  # noqa: S608 - built from constants; values are parameters


# --- the platform ------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    rng: random.Random
    now: dt.datetime
    start: dt.datetime  # first hour of history
    change_at: dt.datetime  # the mid-history price change
    prefix: str


def _endpoint_params(seed: int, endpoint: Endpoint, model_size: int, gpu_index: int) -> dict[str, Any]:
    """Traffic and latency of one endpoint, a function of the seed and its id (so `extend` finds the same)."""
    rng = random.Random(seed * 1_000_003 + endpoint.pk)  # noqa: S311 - reproducible synthetic data
    size_class = 0 if model_size <= 9 else (2 if model_size <= 50 else 3)
    profile = min(PROFILES - 1, max(0, size_class + (1 if gpu_index == 2 else 0) + rng.choice([-1, 0, 0, 1])))
    busy = rng.random()
    return {
        "profile": profile,
        "base_rps": round(0.02 + 8 * busy**2.5, 4),  # most endpoints are quiet, a few are busy
        "prompt_avg": rng.choice([180, 350, 600, 1200, 2400]),
        "gen_avg": rng.choice([60, 120, 250, 500]),
        "idle_share": round(0.55 if busy < 0.15 else 0.03, 2),  # dev endpoints sit idle most hours
        "shift": rng.choice([0, 0, 0, 1, -5, -6, 8]),
        "e2e_mean": round(_fractions("e2e", profile)[1], 3),
    }


def _make_platform(*, plan: _Plan, teams: int, endpoints: int, days: int, seed: int, say: Say) -> dict[str, Any]:
    rng, now, prefix = plan.rng, plan.now, plan.prefix
    gpu_types: list[GpuType] = []
    for sku, memory, price, currency, later in GPUS:
        gpu = GpuType.objects.create(sku=f"{prefix}{sku}", memory_gib=memory)
        # The first price covers any history `extend` may add later.
        GpuPrice.objects.create(
            gpu_type=gpu, hourly_price=price, currency=currency, effective_from=plan.start - DAY * 4000
        )
        if later is not None:
            GpuPrice.objects.create(
                gpu_type=gpu, hourly_price=later, currency=currency, effective_from=plan.change_at, note="mid-history"
            )
        gpu_types.append(gpu)
    clusters = [
        Cluster.objects.create(name=f"{prefix}ray-east", runtime=Cluster.Runtime.RAY, description="Ray, east"),
        Cluster.objects.create(name=f"{prefix}k8s-west", runtime=Cluster.Runtime.KUBERNETES, description="West"),
        Cluster.objects.create(name=f"{prefix}k8s-eu", runtime=Cluster.Runtime.KUBERNETES, description="EU"),
    ]
    models = []
    for name, source, billions, layers, hidden, heads, kv_heads, quality in MODELS:
        models.append(
            CatalogModel.objects.create(
                name=f"{prefix}{name}",
                source=source,
                family=name.split("-")[0],
                parameter_count=billions * 1_000_000_000,
                context_length=32768,
                num_layers=layers,
                hidden_size=hidden,
                num_attention_heads=heads,
                num_kv_heads=kv_heads,
                head_dim=hidden // heads,
                quality_score=Decimal(quality) if quality else None,
                quality_source="example leaderboard (synthetic)" if quality else "",
                recommended_gpu_type=gpu_types[0 if billions > 20 else 2],
            )
        )
    sizes = {m.pk: MODELS[i][2] for i, m in enumerate(models)}
    team_rows = [
        Team(
            slug=f"{prefix}{TEAM_WORDS[i % len(TEAM_WORDS)]}-{i:03d}",
            name=f"{TEAM_WORDS[i % len(TEAM_WORDS)].title()} {i}",
            cost_center=f"CC-{4000 + i}",
            approval_policy=Team.ApprovalPolicy.REVIEW if i % 4 == 3 else Team.ApprovalPolicy.AUTO,
        )
        for i in range(teams)
    ]
    team_list = Team.objects.bulk_create(team_rows)
    unusable = "!generated"  # an unusable password hash: sign in through the test client or SSO only
    users = [
        User(username=f"{prefix}admin", email=f"{prefix}admin@example.com", is_platform_admin=True, password=unusable),
        User(username=f"{prefix}finance", email=f"{prefix}finance@example.com", is_finance=True, password=unusable),
    ]
    for team in team_list:
        for role in ("lead", "member"):
            users.append(
                User(username=f"{role}-{team.slug}", email=f"{role}-{team.slug}@example.com", password=unusable)
            )
    users = User.objects.bulk_create(users)
    by_name = {u.username: u for u in users}
    Membership.objects.bulk_create(
        Membership(user=by_name[f"{role}-{team.slug}"], team=team, role=role)
        for team in team_list
        for role in (Membership.Role.LEAD, Membership.Role.MEMBER)
    )

    endpoint_rows = []
    states = []
    for j in range(endpoints):
        team = team_list[j % teams]
        draw = rng.randrange(1000)
        state = next(s for s, upto in STATES if draw < upto)
        if j < teams:  # every team's first endpoint runs, so every team has usage
            state = Endpoint.State.READY
        states.append(state)
        model = models[rng.randrange(len(models))]
        gpu = gpu_types[min(j % 4 if sizes[model.pk] <= 20 else j % 2, len(gpu_types) - 1)]
        low = rng.choice([1, 1, 1, 2, 2, 3])
        endpoint_rows.append(
            Endpoint(
                team=team,
                name=f"{model.name.removeprefix(prefix).replace('.', '-')[:24].rstrip('-')}-{j:04d}",
                model=model,
                cluster=clusters[j % len(clusters)],
                gpu_type=gpu,
                gpus_per_replica=rng.choice([1, 1, 2, 2, 4, 8]) if sizes[model.pk] > 20 else rng.choice([1, 1, 1, 2]),
                min_replicas=low,
                max_replicas=low + rng.choice([0, 1, 2, 3]),
                max_model_len=8192,
                state=state,
                state_message="vLLM exited: CUDA out of memory" if state == Endpoint.State.FAILED else "",
                requested_by=by_name[f"lead-{team.slug}"],
                generation=2,
                observed_generation=2 if state == Endpoint.State.READY else 1,
            )
        )
    created = Endpoint.objects.bulk_create(endpoint_rows, batch_size=1000)
    # When each endpoint started and stopped running (history start, or later for newer ones).
    gpu_index = {g.pk: i for i, g in enumerate(gpu_types)}
    periods: list[tuple[Endpoint, dt.datetime, dt.datetime]] = []
    for j, endpoint in enumerate(created):
        since = plan.start if (j < teams or rng.random() < 0.8) else plan.start + HOUR * rng.randrange(24 * days)
        until = now + HOUR
        if endpoint.state == Endpoint.State.FAILED:
            until = max(since + HOUR, now - HOUR * rng.randrange(1, 72))
        elif endpoint.state == Endpoint.State.DELETED:
            until = max(since + HOUR, now - HOUR * rng.randrange(24, 24 * max(days, 2)))
        elif endpoint.state not in HAS_USAGE:
            since = until = now - HOUR * rng.randrange(1, 48)
        since, until = [t.replace(minute=0, second=0, microsecond=0) for t in (since, until)]
        periods.append((endpoint, since, until))
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE endpoints_endpoint SET created_at = %s, ready_at = %s, observed_replicas = %s, deleted_at = %s "
            "WHERE id = %s",
            [
                (
                    since,
                    since + dt.timedelta(minutes=4) if e.state in HAS_USAGE else None,
                    e.min_replicas if e.state in {Endpoint.State.READY, Endpoint.State.UPDATING} else 0,
                    until if e.state == Endpoint.State.DELETED else None,
                    e.pk,
                )
                for e, since, until in periods
            ],
        )
    # Operations: a successful apply for each endpoint that ran, a failed one for each failed endpoint, and some
    # failed reconciles lately.
    operations = []
    for endpoint, since, until in periods:
        if endpoint.state in HAS_USAGE:
            operations.append((endpoint, Operation.Kind.APPLY, Operation.State.SUCCEEDED, since, ""))
        if endpoint.state == Endpoint.State.FAILED:
            operations.append(
                (
                    endpoint,
                    Operation.Kind.RECONCILE,
                    Operation.State.FAILED,
                    until,
                    "replica crashed: CUDA out of memory",
                )
            )
        elif endpoint.state == Endpoint.State.READY and rng.random() < 0.02:
            at = now - HOUR * rng.randrange(1, 24 * 7)
            operations.append((endpoint, Operation.Kind.UPDATE, Operation.State.FAILED, at, "timed out after 900 s"))
        elif endpoint.state in {Endpoint.State.UPDATING, Endpoint.State.PROVISIONING}:
            operations.append((endpoint, Operation.Kind.APPLY, Operation.State.RUNNING, now - HOUR, ""))
    made = Operation.objects.bulk_create(
        [
            Operation(cluster=e.cluster, endpoint=e, kind=kind, state=state, attempts=1, message=message)
            for e, kind, state, _, message in operations
        ],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE endpoints_operation SET created_at = %s, started_at = %s, finished_at = %s WHERE id = %s",
            [
                (at, at, at + dt.timedelta(minutes=3) if state != Operation.State.RUNNING else None, op.pk)
                for op, (_, _, state, at, _) in zip(made, operations, strict=True)
            ],
        )

    # Quotas from what each team holds, some teams at their limit; budgets against the expected monthly cost.
    held: dict[tuple[int, int], int] = {}
    monthly: dict[int, Decimal] = {}
    prices = {g.pk: GPUS[i][2] for i, g in enumerate(gpu_types)}
    for endpoint, _, _ in periods:
        if endpoint.state in HAS_USAGE - {Endpoint.State.DELETED} or endpoint.state == Endpoint.State.PENDING_APPROVAL:
            key = (endpoint.team_id, endpoint.gpu_type_id)
            held[key] = held.get(key, 0) + endpoint.max_replicas * endpoint.gpus_per_replica
        if endpoint.state in HAS_USAGE and GPUS[gpu_index[endpoint.gpu_type_id]][3] == "USD":
            monthly[endpoint.team_id] = monthly.get(endpoint.team_id, Decimal(0)) + (
                prices[endpoint.gpu_type_id] * endpoint.gpus_per_replica * (endpoint.min_replicas + 1) * 720
            )
    quotas = []
    for team in team_list:
        for gpu in gpu_types:
            used = held.get((team.pk, gpu.pk), 0)
            if used or rng.random() < 0.3:
                tight = rng.random() < 0.15
                quotas.append(GpuQuota(team=team, gpu_type=gpu, limit=used if tight else max(8, math.ceil(used * 1.5))))
    GpuQuota.objects.bulk_create(quotas)
    budgets = []
    for i, team in enumerate(team_list):
        if i % 10 == 9:
            continue  # some teams have no budget
        factor = Decimal(rng.choice(["0.6", "0.8", "1.3", "1.6", "2.0", "3.0"]))  # 0.6 and 0.8: over budget
        amount = max(Decimal(500), (monthly.get(team.pk, Decimal(0)) * factor).quantize(Decimal(100)))
        budgets.append(Budget(team=team, monthly_amount=amount, currency="USD", alert_thresholds=[50, 80, 100]))
    Budget.objects.bulk_create(budgets)
    totals: dict[int, int] = {}
    for (_, gpu_id), used in held.items():
        totals[gpu_id] = totals.get(gpu_id, 0) + used
    ClusterGpuInventory.objects.bulk_create(
        ClusterGpuInventory(cluster=cluster, gpu_type=gpu, count=math.ceil(totals.get(gpu.pk, 8) * 1.25 / 3) + 8)
        for cluster in clusters
        for gpu in gpu_types
    )
    requests = []
    for i, team in enumerate(team_list):
        if i % 12 == 1 or i % 25 == 7:
            gpu = gpu_types[i % len(gpu_types)]
            requests.append(
                QuotaRequest(
                    team=team,
                    gpu_type=gpu,
                    requested_limit=held.get((team.pk, gpu.pk), 0) + 16,
                    justification="New workload for the quarter.",
                    requested_by=by_name[f"lead-{team.slug}"],
                )
            )
    QuotaRequest.objects.bulk_create(requests)

    endpoint_params = []
    for endpoint, since, until in periods:
        if endpoint.state in HAS_USAGE:
            params = _endpoint_params(seed, endpoint, sizes[endpoint.model_id], gpu_index[endpoint.gpu_type_id])
            endpoint_params.append((endpoint, since, until, params))
    say(
        f"platform: {teams} teams, {len(users)} users, {endpoints} endpoints ({len(endpoint_params)} with usage), "
        f"{len(made)} operations, {len(quotas)} quotas, {len(budgets)} budgets, {len(requests)} quota requests"
    )
    return {"endpoint_params": endpoint_params}


# --- the big tables ----------------------------------------------------------------------------------------


def _prepare(cursor: Any, endpoint_params: list[tuple[Endpoint, dt.datetime, dt.datetime, dict[str, Any]]]) -> None:
    """Session temp tables: endpoints' traffic parameters, price periods, histogram templates and lookup."""
    cursor.execute("SET synchronous_commit = off")
    cursor.execute("SET work_mem = '256MB'")
    cursor.execute(
        """
        DROP TABLE IF EXISTS gen_ep, gen_price, gen_template, gen_lookup;
        CREATE TEMP TABLE gen_ep (endpoint_id bigint PRIMARY KEY, team_id bigint, gpu_type_id bigint,
            gpus_per_replica int, min_r int, max_r int, profile int, base_rps float8, prompt_avg float8,
            gen_avg float8, idle_share float8, shift int, e2e_mean float8, active_from timestamptz,
            active_until timestamptz);
        CREATE TEMP TABLE gen_price AS
            SELECT gpu_type_id, hourly_price AS rate, currency, effective_from AS valid_from,
                   coalesce(lead(effective_from) OVER (PARTITION BY gpu_type_id ORDER BY effective_from),
                            'infinity'::timestamptz) AS valid_until
            FROM inventory_gpuprice;
        CREATE TEMP TABLE gen_template (profile int, name text, layout bigint, own float8[], slow float8[],
            own_mean float8, slow_mean float8);
        CREATE TEMP TABLE gen_lookup (profile int, congestion int, requests bigint, reasons jsonb, histograms jsonb,
            PRIMARY KEY (profile, congestion, requests));
        """
    )
    cursor.executemany(
        "INSERT INTO gen_ep VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (
                e.pk, e.team_id, e.gpu_type_id, e.gpus_per_replica, e.min_replicas, e.max_replicas, p["profile"],
                p["base_rps"], p["prompt_avg"], p["gen_avg"], p["idle_share"], p["shift"], p["e2e_mean"], since, until,
            )
            for e, since, until, p in endpoint_params
        ],
    )  # fmt: skip
    layouts = layout_ids(BOUNDS.values())
    layout_of = {name: layouts[bounds] for name, bounds in BOUNDS.items()}
    templates = []
    for profile in range(PROFILES):
        for name in BOUNDS:
            own, own_mean = _fractions(name, profile)
            slow, slow_mean = _fractions(name, profile + 1)
            templates.append((profile, name, layout_of[name], own, slow, own_mean, slow_mean))
    cursor.executemany("INSERT INTO gen_template VALUES (%s, %s, %s, %s, %s, %s, %s)", templates)
    cursor.execute("ANALYZE gen_ep; ANALYZE gen_price")


def _fill_lookup(cursor: Any, table: str) -> None:
    """Add the histogram documents that rows of `table` (profile, congestion, requests) need and the lookup lacks."""
    cursor.execute(
        f"SELECT DISTINCT q.profile, q.congestion, q.requests FROM {table} q WHERE q.requests > 0 AND NOT EXISTS ("  # noqa: S608 - our temp tables
        "SELECT 1 FROM gen_lookup l WHERE l.profile = q.profile AND l.congestion = q.congestion"
        " AND l.requests = q.requests)"
    )
    wanted = [tuple(row) for row in cursor.fetchall()]
    if not wanted:
        return
    layouts = layout_ids(BOUNDS.values())
    layout_of = {name: layouts[bounds] for name, bounds in BOUNDS.items()}
    with cursor.copy("COPY gen_lookup (profile, congestion, requests, reasons, histograms) FROM STDIN") as copy:
        for row in lookup_rows(layout_of, wanted):
            copy.write_row(row)
    cursor.execute("ANALYZE gen_lookup")


def _insert_with_lookup(cursor: Any, sql: str, params: dict[str, Any], source: str) -> int:
    """Run a `WITH ... INSERT ... FROM <source> s LEFT JOIN gen_lookup` statement in two steps, so that the lookup
    can first be given what the rows need."""
    head, insert = sql.split("\nINSERT INTO", 1)
    cursor.execute(
        f"DROP TABLE IF EXISTS gen_rows; CREATE TEMP TABLE gen_rows AS {head}\nSELECT * FROM {source}", params
    )
    _fill_lookup(cursor, "gen_rows")
    cursor.execute("INSERT INTO" + insert.replace(f"FROM {source} s", "FROM gen_rows s"))
    rows = int(cursor.rowcount)
    cursor.execute("DROP TABLE gen_rows")
    return rows


def _history(*, first_day: dt.date, last_day: dt.date, now: dt.datetime, report: Report, say: Say) -> None:
    """Hour and day rows for statement-zone days first_day..last_day (hours up to `now`'s hour), newest first."""
    zone = statement_zone().key
    end_hour = now.replace(minute=0, second=0, microsecond=0)
    chunk_end = last_day
    with connection.cursor() as cursor:
        while chunk_end >= first_day:
            chunk_start = max(first_day, chunk_end - dt.timedelta(days=CHUNK_DAYS - 1))
            start = day_bounds(chunk_start)[0]
            end = min(day_bounds(chunk_end)[1], end_hour)
            started = time.perf_counter()
            with transaction.atomic():
                cursor.execute(HOUR_CHUNK, {"start": start, "end": end, "now": now, "stop": STOP_PERCENT})
                _fill_lookup(cursor, "gen_hour")
                cursor.execute(INSERT_HOURS)
                hours = cursor.rowcount
                cursor.execute(INSERT_DAYS, {"zone": zone, "congestion": list(CONGESTION)})
                days = cursor.rowcount
                cursor.execute("DROP TABLE gen_hour")
            report.counts["hour_rows_written"] = report.counts.get("hour_rows_written", 0) + hours
            report.counts["day_rows_written"] = report.counts.get("day_rows_written", 0) + days
            say(
                f"  {chunk_start}..{chunk_end}: {hours} hour rows, {days} day rows "
                f"in {time.perf_counter() - started:.1f}s"
            )
            chunk_end = chunk_start - dt.timedelta(days=1)


def _direct_days(*, first_day: dt.date, last_day: dt.date, now: dt.datetime, report: Report, say: Say) -> None:
    zone = statement_zone().key
    chunk_end = last_day
    with connection.cursor() as cursor:
        while chunk_end >= first_day:
            chunk_start = max(first_day, chunk_end - dt.timedelta(days=CHUNK_DAYS * 10 - 1))
            started = time.perf_counter()
            with transaction.atomic():
                written = _insert_with_lookup(
                    cursor, DIRECT_DAYS, {"zone": zone, "now": now, "first": chunk_start, "last": chunk_end}, "priced"
                )
            report.counts["day_rows_written"] = report.counts.get("day_rows_written", 0) + written
            seconds = time.perf_counter() - started
            say(f"  {chunk_start}..{chunk_end}: {written} day rows (no hours) in {seconds:.1f}s")
            chunk_end = chunk_start - dt.timedelta(days=1)


def _minutes(*, now: dt.datetime, report: Report) -> None:
    end = now.replace(second=0, microsecond=0)
    with connection.cursor() as cursor, transaction.atomic():
        report.counts["minute_rows_written"] = _insert_with_lookup(
            cursor, INSERT_MINUTES, {"start": end - HOUR * MINUTE_HOURS, "end": end}, "shaped"
        )


def precompute(report: Report, say: Say = _quiet) -> None:
    """The small tables the pages read, refreshed as the worker would (when they exist yet)."""
    for module, function in (
        ("apps.metering.monthly", "refresh_team_months"),
        ("apps.dashboards.summaries", "refresh_endpoint_summaries"),
    ):
        try:
            imported = __import__(module, fromlist=[function])
            refresh = getattr(imported, function)
        except (ImportError, AttributeError):
            report.notes.append(f"{module}.{function} does not exist: skipped")
            say(f"note: {module}.{function} does not exist: skipped")
            continue
        started = time.perf_counter()
        refresh()
        report.timings[f"{function}_s"] = round(time.perf_counter() - started, 1)
        say(f"{module}.{function}() in {report.timings[f'{function}_s']}s")


def _count(report: Report) -> None:
    with connection.cursor() as cursor:
        for label, model in (("hour_rows", UsageHour), ("day_rows", UsageDay), ("minute_rows", UsageMinute)):
            cursor.execute(f"SELECT count(*) FROM {model._meta.db_table}")  # noqa: S608 - our own table names
            report.counts[label] = int(cursor.fetchone()[0])
    report.counts["teams"] = Team.objects.count()
    report.counts["endpoints"] = Endpoint.objects.count()
    report.counts["users"] = User.objects.count()
    report.counts["operations"] = Operation.objects.count()


def generate(
    *,
    teams: int,
    endpoints: int,
    days: int,
    seed: int = 1,
    force: bool = False,
    prefix: str = "",
    now: dt.datetime | None = None,
    say: Say = _quiet,
) -> Report:
    """The whole platform with `days` days of history up to `now`. Refuses a database with teams unless `force`."""
    if teams < 1 or endpoints < 1 or days < 1:
        raise ValueError("teams, endpoints and days must be at least 1")
    if not force and Team.objects.exists():
        raise ValueError("this database has teams already: refusing to add generated data (use --force)")
    now = now or timezone.now()
    report = Report()
    last_day = local_day(now)
    first_day = last_day - dt.timedelta(days=days - 1)
    start = day_bounds(first_day)[0]
    change_at = (start + (now - start) / 2).replace(minute=0, second=0, microsecond=0)
    plan = _Plan(rng=random.Random(seed), now=now, start=start, change_at=change_at, prefix=prefix)  # noqa: S311
    started = time.perf_counter()
    with transaction.atomic():
        made = _make_platform(plan=plan, teams=teams, endpoints=endpoints, days=days, seed=seed, say=say)
    report.timings["platform_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        _prepare(cursor, made["endpoint_params"])
    report.timings["lookup_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    _history(first_day=first_day, last_day=last_day, now=now, report=report, say=say)
    report.timings["history_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    _minutes(now=now, report=report)
    report.timings["minutes_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_usagehour; ANALYZE metering_usageday; ANALYZE metering_usageminute")
    report.timings["analyze_s"] = round(time.perf_counter() - started, 1)
    precompute(report, say)
    _count(report)
    report.first_day, report.last_day = first_day, last_day
    return report


def extend(*, days: int, hour_days: int | None = None, seed: int = 1, say: Say = _quiet) -> Report:
    """`days` more days of history before the oldest day, for the endpoints that were running on that day.

    Hour and day rows for the newest `hour_days` of them (all by default); older days get day rows only, made
    straight away (a tenth of the rows: what a long history costs to read is mostly its days)."""
    if days < 1:
        raise ValueError("--extend-days must be at least 1")
    oldest = UsageDay.objects.order_by("day").values_list("day", flat=True).first()
    if oldest is None:
        raise ValueError("there is no history to extend: generate it first")
    report = Report()
    running = set(UsageDay.objects.filter(day=oldest).values_list("endpoint_id", flat=True))
    first_hour = day_bounds(oldest)[0]
    sizes = {m.pk: max(1, m.parameter_count // 1_000_000_000) for m in CatalogModel.objects.all()}
    gpu_order = {pk: i for i, pk in enumerate(GpuType.objects.order_by("pk").values_list("pk", flat=True))}
    endpoint_params = []
    for endpoint in Endpoint.objects.filter(pk__in=running).order_by("pk"):
        params = _endpoint_params(seed, endpoint, sizes[endpoint.model_id], gpu_order.get(endpoint.gpu_type_id, 0))
        endpoint_params.append((endpoint, first_hour - DAY * (days + 1), first_hour, params))
    started = time.perf_counter()
    with connection.cursor() as cursor:
        _prepare(cursor, endpoint_params)
    report.timings["lookup_s"] = round(time.perf_counter() - started, 1)
    first_day, last_day = oldest - dt.timedelta(days=days), oldest - dt.timedelta(days=1)
    hour_days = days if hour_days is None else max(0, min(hour_days, days))
    # `now` only sets the growth trend: the newest hour, as in the first run.
    now = (UsageHour.objects.order_by("-hour").values_list("hour", flat=True).first() or first_hour) + HOUR
    started = time.perf_counter()
    if hour_days:
        _history(
            first_day=last_day - dt.timedelta(days=hour_days - 1), last_day=last_day, now=now, report=report, say=say
        )
    report.timings["history_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    if hour_days < days:
        _direct_days(
            first_day=first_day, last_day=last_day - dt.timedelta(days=hour_days), now=now, report=report, say=say
        )
    report.timings["direct_days_s"] = round(time.perf_counter() - started, 1)
    report.counts["days_with_hours"] = hour_days
    report.counts["days_without_hours"] = days - hour_days
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_usagehour; ANALYZE metering_usageday")
    report.timings["analyze_s"] = round(time.perf_counter() - started, 1)
    precompute(report, say)
    _count(report)
    report.first_day, report.last_day = first_day, last_day
    return report


def catch_up(*, seed: int = 1, now: dt.datetime | None = None, say: Say = _quiet) -> Report:
    """Bring a generated history up to `now`, as the worker would have: the statement-zone days from the newest
    hour row's day to today are made again whole (hours and days, so that days stay the sum of their hours) and the
    minute rows are the two hours before `now` again. Older history is left alone."""
    now = now or timezone.now()
    newest = UsageHour.objects.order_by("-hour").values_list("hour", flat=True).first()
    if newest is None:
        raise ValueError("there is no history to catch up: generate it first")
    report = Report()
    first_day = local_day(newest)
    start = day_bounds(first_day)[0]
    spans = {
        row["endpoint_id"]: (row["first"], row["last"])
        for row in UsageHour.objects.filter(hour__gte=start)
        .values("endpoint_id")
        .annotate(first=Min("hour"), last=Max("hour"))
    }
    sizes = {m.pk: max(1, m.parameter_count // 1_000_000_000) for m in CatalogModel.objects.all()}
    gpu_order = {pk: i for i, pk in enumerate(GpuType.objects.order_by("pk").values_list("pk", flat=True))}
    endpoint_params = []
    for endpoint in Endpoint.objects.filter(pk__in=spans).order_by("pk"):
        since, last = spans[endpoint.pk]
        until = now + HOUR if last >= newest else last + HOUR  # still running at the end, or stopped that day
        params = _endpoint_params(seed, endpoint, sizes[endpoint.model_id], gpu_order.get(endpoint.gpu_type_id, 0))
        endpoint_params.append((endpoint, since, until, params))
    started = time.perf_counter()
    with transaction.atomic():
        UsageHour.objects.filter(hour__gte=start).delete()
        UsageDay.objects.filter(day__gte=first_day).delete()
        UsageMinute.objects.all().delete()
        with connection.cursor() as cursor:
            _prepare(cursor, endpoint_params)
        _history(first_day=first_day, last_day=local_day(now), now=now, report=report, say=say)
        _minutes(now=now, report=report)
    report.timings["catch_up_s"] = round(time.perf_counter() - started, 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_usagehour; ANALYZE metering_usageday; ANALYZE metering_usageminute")
    precompute(report, say)
    _count(report)
    report.first_day, report.last_day = first_day, local_day(now)
    return report
