"""From scraped cumulative values to per-minute usage rows: deltas, counter resets, gaps and several replicas.

Per endpoint, `ScrapeState` keeps the last cumulative values seen for each replica. A scrape's delta for a replica:

- a replica seen for the first time counts in full: every series belongs to one endpoint (the served model id
  contains the endpoint's id), so nothing on it has been counted before;
- a counter reset (replica restarted: its `_created` start time changed, or any counter went down) counts the
  current values in full, as Prometheus' `increase()` does;
- otherwise, current minus previous.

A replica that is missing from a scrape (its target did not answer, or it went away) keeps its last values for a
week, so that when it comes back only what it did in between is counted. A gap between scrapes loses nothing:
the next scrape's delta holds everything since the last one and is booked in the minute of that scrape.

Deltas are added to the current minute's accumulators (in `ScrapeState.accum`), and the minute row is written with
the totals, so each scrape is one idempotent upsert of the minute row, in the same transaction as the new state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.endpoints.models import Endpoint
from apps.inventory.models import Cluster

from . import scrape
from .models import DirtyHour, HistogramLayout, ScrapeState, ScrapeTarget, UsageMinute
from .scrape import ReplicaSample, Samples, TargetResult

# Endpoints whose metrics are read: those that may serve (and, while provisioning, may start serving).
METERED_STATES = (
    Endpoint.State.PROVISIONING,
    Endpoint.State.READY,
    Endpoint.State.UPDATING,
    Endpoint.State.DELETING,
)
KEEP_MISSING_REPLICA = dt.timedelta(days=7)
USAGE_FIELDS = [
    "requests",
    "requests_by_reason",
    "prompt_tokens",
    "generation_tokens",
    "histograms",
    "running_sum",
    "waiting_sum",
    "kv_usage_sum",
    "gauge_samples",
    "running_max",
    "waiting_max",
    "kv_usage_max",
    "metric_replicas",
    "scrapes",
]


def floor_minute(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(second=0, microsecond=0)


def floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def mark_dirty(hours: Iterable[dt.datetime], *, now: dt.datetime | None = None) -> None:
    """Note that these hours' minute rows changed, for the next rollup."""
    marked_at = now or dt.datetime.now(dt.UTC)
    rows = [DirtyHour(hour=hour, marked_at=marked_at) for hour in sorted(set(hours))]
    if rows:
        DirtyHour.objects.bulk_create(rows, update_conflicts=True, unique_fields=["hour"], update_fields=["marked_at"])


# --- deltas ----------------------------------------------------------------------------------------
def replica_delta(previous: dict[str, Any] | None, sample: ReplicaSample) -> dict[str, float]:
    """What one replica did since the previous scrape (see the module docstring for the rules)."""
    current = sample.counters
    if previous is None:
        return {key: value for key, value in current.items() if value}
    old: dict[str, float] = previous.get("c", {})
    restarted = sample.created is not None and previous.get("t") is not None and sample.created != previous["t"]
    if restarted or any(key in old and value < old[key] for key, value in current.items()):
        return {key: value for key, value in current.items() if value}
    delta = {}
    for key, value in current.items():
        change = value - old.get(key, 0.0)
        if change:
            delta[key] = change
    return delta


@dataclass
class Accumulator:
    """One endpoint's usage in one minute so far. Stored as JSON in `ScrapeState.accum`."""

    requests: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    prompt: int = 0
    generation: int = 0
    hist: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    running_sum: float = 0.0
    waiting_sum: float = 0.0
    kv_sum: float = 0.0
    samples: int = 0
    running_max: float = 0.0
    waiting_max: float = 0.0
    kv_max: float = 0.0
    replicas: int = 0
    scrapes: int = 0

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Accumulator:
        return cls(**data) if data else cls()

    def dump(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add_delta(
        self,
        delta: dict[str, float],
        bounds: dict[str, tuple[float, ...]],
        layouts: dict[tuple[float, ...], int],
    ) -> None:
        """Add one replica's delta; `bounds` are the bucket layouts of that replica's histograms."""
        self.prompt += round(delta.get("p", 0.0))
        self.generation += round(delta.get("g", 0.0))
        for key, value in delta.items():
            if key.startswith("r:"):
                reason = key[2:] or "unknown"
                count = round(value)
                if count:
                    self.by_reason[reason] = self.by_reason.get(reason, 0) + count
                    self.requests += count
        for name, layout_bounds in bounds.items():
            self._add_histogram(name, layout_bounds, delta, layouts)

    def _add_histogram(
        self,
        name: str,
        bounds: tuple[float, ...],
        delta: dict[str, float],
        layouts: dict[tuple[float, ...], int],
    ) -> None:
        count = delta.get(f"hc:{name}", 0.0)
        cumulative = [delta.get(f"h:{name}:{bound!r}", 0.0) for bound in bounds]
        cumulative.append(delta.get(f"h:{name}:inf", count))
        if not count and not any(cumulative):
            return
        layout = layouts[bounds]
        increments = _increments(cumulative)
        part = {"l": layout, "b": increments, "s": delta.get(f"hs:{name}", 0.0), "c": count}
        parts = self.hist.setdefault(name, [])
        for existing in parts:
            if existing["l"] == layout:
                existing["b"] = [a + b for a, b in zip(existing["b"], increments, strict=True)]
                existing["s"] += part["s"]
                existing["c"] += part["c"]
                return
        parts.append(part)

    def add_gauges(self, replicas: Sequence[ReplicaSample]) -> None:
        if not replicas:
            return
        running = sum(r.gauges.get("running", 0.0) for r in replicas)
        waiting = sum(r.gauges.get("waiting", 0.0) for r in replicas)
        kv = sum(r.gauges.get("kv", 0.0) for r in replicas) / len(replicas)
        self.running_sum += running
        self.waiting_sum += waiting
        self.kv_sum += kv
        self.samples += 1
        self.running_max = max(self.running_max, running)
        self.waiting_max = max(self.waiting_max, waiting)
        self.kv_max = max(self.kv_max, kv)
        self.replicas = max(self.replicas, len(replicas))

    def row_values(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "requests_by_reason": self.by_reason,
            "prompt_tokens": self.prompt,
            "generation_tokens": self.generation,
            "histograms": self.hist,
            "running_sum": self.running_sum,
            "waiting_sum": self.waiting_sum,
            "kv_usage_sum": self.kv_sum,
            "gauge_samples": self.samples,
            "running_max": self.running_max,
            "waiting_max": self.waiting_max,
            "kv_usage_max": self.kv_max,
            "metric_replicas": self.replicas,
            "scrapes": self.scrapes,
        }


def _increments(cumulative: Sequence[float]) -> list[float]:
    out = []
    previous = 0.0
    for value in cumulative:
        out.append(max(value - previous, 0.0))
        previous = max(previous, value)
    return out


def histogram_bounds(sample: ReplicaSample) -> dict[str, tuple[float, ...]]:
    """Each histogram's finite bucket bounds in one replica's sample."""
    found: dict[str, set[float]] = {}
    for key in sample.counters:
        if key.startswith("h:"):
            _, name, le = key.split(":", 2)
            bounds = found.setdefault(name, set())
            bound = float(le)
            if bound != float("inf"):
                bounds.add(bound)
        elif key.startswith("hc:"):
            found.setdefault(key[3:], set())
    return {name: tuple(sorted(bounds)) for name, bounds in found.items()}


def layout_ids(wanted: Iterable[tuple[float, ...]]) -> dict[tuple[float, ...], int]:
    wanted = set(wanted)
    if not wanted:
        return {}
    found = {
        tuple(b): pk
        for pk, b in HistogramLayout.objects.filter(bounds__in=[list(w) for w in wanted]).values_list("pk", "bounds")
    }
    missing = wanted - set(found)
    if missing:
        HistogramLayout.objects.bulk_create(
            [HistogramLayout(bounds=list(bounds)) for bounds in missing], ignore_conflicts=True
        )
        found.update(
            {
                tuple(b): pk
                for pk, b in HistogramLayout.objects.filter(bounds__in=[list(w) for w in missing]).values_list(
                    "pk", "bounds"
                )
            }
        )
    return found


# --- applying a scrape -----------------------------------------------------------------------------
@dataclass
class IngestReport:
    endpoints: int = 0
    skipped_stale: int = 0
    replicas: int = 0


def ingest(
    *,
    endpoints: Sequence[Endpoint],
    samples: Samples,
    at: dt.datetime,
    unreachable: Iterable[str] = (),
) -> IngestReport:
    """Book one scrape (taken at `at`) for these endpoints. `unreachable`: sources that did not answer, whose
    replicas are kept as they were."""
    report = IngestReport()
    if not endpoints:
        return report
    bounds = {id(sample): histogram_bounds(sample) for replicas in samples.values() for sample in replicas.values()}
    layouts = layout_ids(b for per_sample in bounds.values() for b in per_sample.values())
    minute = floor_minute(at)
    stamp = at.timestamp()
    down = tuple(unreachable)
    ids = sorted(endpoint.pk for endpoint in endpoints)
    with transaction.atomic():
        ScrapeState.objects.bulk_create([ScrapeState(endpoint_id=pk) for pk in ids], ignore_conflicts=True)
        states = {
            s.endpoint_id: s
            for s in ScrapeState.objects.select_for_update().filter(endpoint_id__in=ids).order_by("endpoint_id")
        }
        rows: list[UsageMinute] = []
        changed: list[ScrapeState] = []
        for endpoint in endpoints:
            state = states[endpoint.pk]
            if state.scraped_at is not None and at <= state.scraped_at:
                report.skipped_stale += 1  # an older scrape finishing after a newer one: booking it would double count
                continue
            replicas = samples.get(endpoint.served_model_id, {})
            accum = Accumulator.load(state.accum if state.minute == minute else None)
            kept: dict[str, Any] = {}
            for key, sample in replicas.items():
                accum.add_delta(replica_delta(state.replicas.get(key), sample), bounds[id(sample)], layouts)
                kept[key] = {"c": sample.counters, "t": sample.created, "seen": stamp}
            for key, old in state.replicas.items():
                if key in kept:
                    continue
                if key.startswith(down) or stamp - old.get("seen", 0) < KEEP_MISSING_REPLICA.total_seconds():
                    kept[key] = old
            accum.add_gauges(list(replicas.values()))
            accum.scrapes += 1
            state.replicas = kept
            state.minute = minute
            state.accum = accum.dump()
            state.scraped_at = at
            changed.append(state)
            rows.append(
                UsageMinute(endpoint_id=endpoint.pk, team_id=endpoint.team_id, minute=minute, **accum.row_values())
            )
            report.endpoints += 1
            report.replicas += len(replicas)
        if changed:
            # An upsert rather than bulk_update: one plain statement instead of a CASE per column and row.
            ScrapeState.objects.bulk_create(
                changed,
                update_conflicts=True,
                unique_fields=["endpoint"],
                update_fields=["replicas", "minute", "accum", "scraped_at"],
            )
            UsageMinute.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["endpoint", "minute"], update_fields=USAGE_FIELDS
            )
            mark_dirty([floor_hour(minute)])
    return report


# --- scraping a cluster ----------------------------------------------------------------------------
@dataclass
class ScrapeReport:
    cluster_id: int
    endpoints: int = 0
    targets: int = 0
    failed: list[str] = field(default_factory=list)
    ingest: IngestReport | None = None
    message: str = ""


def cluster_targets(cluster: Cluster) -> list[str]:
    if cluster.metrics_source == Cluster.MetricsSource.PROMETHEUS:
        return [cluster.prometheus_url] if cluster.prometheus_url else []
    return list(dict.fromkeys(line.strip() for line in cluster.metrics_urls.splitlines() if line.strip()))


OK_FIELDS = ("last_attempt_at", "last_success_at", "last_error", "last_seconds", "last_bytes")
FAILED_FIELDS = ("last_attempt_at", "last_error")


def _record_targets(results: Sequence[tuple[int, TargetResult]]) -> None:
    """Each target's health; a failure keeps the last success's time and size."""
    now = dt.datetime.now(dt.UTC)
    rows: dict[tuple[str, ...], list[ScrapeTarget]] = {OK_FIELDS: [], FAILED_FIELDS: []}
    for cluster_id, result in results:
        target = ScrapeTarget(cluster_id=cluster_id, url=result.url, last_attempt_at=now)
        if result.ok:
            target.last_success_at = now
            target.last_seconds = result.seconds
            target.last_bytes = result.size
            rows[OK_FIELDS].append(target)
        else:
            target.last_error = result.error[:2000]
            rows[FAILED_FIELDS].append(target)
    for fields, targets in rows.items():
        if targets:
            ScrapeTarget.objects.bulk_create(
                targets, update_conflicts=True, unique_fields=["cluster", "url"], update_fields=list(fields)
            )


def scrape_clusters(*, cluster_ids: Sequence[int]) -> list[ScrapeReport]:
    """Read the metrics of every metered endpoint of these clusters: each target is fetched once and serves all
    the endpoints of its cluster; everything is booked in one transaction."""
    clusters = {c.pk: c for c in Cluster.objects.filter(pk__in=list(cluster_ids))}
    reports = {pk: ScrapeReport(cluster_id=pk) for pk in cluster_ids if pk in clusters}
    by_cluster: dict[int, list[Endpoint]] = {pk: [] for pk in reports}
    endpoints = Endpoint.objects.filter(cluster_id__in=list(reports), state__in=METERED_STATES).select_related("team")
    for endpoint in endpoints.order_by("pk"):
        by_cluster[endpoint.cluster_id].append(endpoint)
    jobs: list[scrape.Job] = []
    for pk, report in reports.items():
        cluster = clusters[pk]
        report.endpoints = len(by_cluster[pk])
        if not by_cluster[pk]:
            continue
        urls = cluster_targets(cluster)
        report.targets = len(urls)
        if not urls:
            report.message = "no metrics source configured for this cluster"
        prometheus = cluster.metrics_source == Cluster.MetricsSource.PROMETHEUS
        models = [e.served_model_id for e in by_cluster[pk]] if prometheus else []
        jobs.extend((pk, url, models) for url in urls)
    results = scrape.fetch_all(jobs, timeout=float(settings.PARETO_METERING_HTTP_TIMEOUT))
    if results:
        _record_targets(results)
    merged: Samples = {}
    booked: list[Endpoint] = []
    unreachable: list[str] = []
    for pk, report in reports.items():
        mine = [result for cluster_id, result in results if cluster_id == pk]
        if not mine:
            continue
        report.failed = [r.url for r in mine if not r.ok]
        unreachable.extend(report.failed)
        if len(report.failed) == len(mine):
            report.message = "; ".join(r.error for r in mine)[:2000]
            continue  # nothing answered: book nothing, the next scrape's deltas cover the gap
        own = {endpoint.served_model_id for endpoint in by_cluster[pk]}
        for result in mine:
            for model, replicas in result.samples.items():
                if model in own:  # an endpoint's metrics come from its own cluster's targets only
                    merged.setdefault(model, {}).update(replicas)
        booked.extend(by_cluster[pk])
    if booked:
        # The scrape's moment: when the first target was asked (all are asked at once).
        at = min(result.fetched_at for _, result in results)
        summary = ingest(endpoints=booked, samples=merged, at=at, unreachable=unreachable)
        for report in reports.values():
            report.ingest = summary
    return list(reports.values())


def scrape_cluster(*, cluster_id: int) -> ScrapeReport:
    """One cluster's scrape (see `scrape_clusters`)."""
    (report,) = scrape_clusters(cluster_ids=[cluster_id])
    return report
