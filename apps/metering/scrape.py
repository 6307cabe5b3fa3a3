"""The one module that fetches metrics: vLLM's Prometheus text from serving processes, or the same series from a
Prometheus server's HTTP API. Everything else gets `TargetResult`s made of plain numbers.

- A plain vLLM server exposes `vllm:*` families on `/metrics`; a Ray node's metrics export port exposes the same
  families as `ray_vllm_*` (with `ReplicaId`, `WorkerId`, ... labels), mixed with hundreds of other Ray series.
- Text is parsed with `prometheus_client.parser` (the maintained parser of the Prometheus Python client). Before
  parsing, lines are filtered down to the sample names Pareto uses, which keeps a 900 KB Ray node scrape cheap;
  the parser still does all the parsing (labels, escaping, values).
- Samples are grouped by `model_name` (the endpoint's served model id) and by replica: a replica is the scrape
  target plus the labels that tell serving processes apart (`engine`, Ray's `ReplicaId`/`WorkerId`, Prometheus'
  `instance`/`job`/`pod`). Counter resets are detected later per replica (`services.ingest`).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import requests
from prometheus_client.parser import text_string_to_metric_families

PREFIXES = ("vllm:", "ray_vllm_")
# Base family name -> short key used in stored state.
COUNTERS = {"prompt_tokens_total": "p", "generation_tokens_total": "g", "request_success_total": "r"}
HISTOGRAMS = {
    "time_to_first_token_seconds": "ttft",
    "inter_token_latency_seconds": "itl",
    "e2e_request_latency_seconds": "e2e",
    "request_queue_time_seconds": "queue",
}
GAUGES = {"num_requests_running": "running", "num_requests_waiting": "waiting", "kv_cache_usage_perc": "kv"}
# When the process that owns the counters started: a change means the counters were reset.
CREATED = "prompt_tokens_created"
REPLICA_LABELS = ("instance", "job", "namespace", "pod", "ReplicaId", "WorkerId", "engine")


def _wanted_names() -> dict[str, tuple[str, str]]:
    """Full sample name -> (kind, base name)."""
    wanted: dict[str, tuple[str, str]] = {}
    for prefix in PREFIXES:
        for base in COUNTERS:
            wanted[prefix + base] = ("counter", base)
        for base in HISTOGRAMS:
            for suffix in ("_bucket", "_sum", "_count"):
                wanted[prefix + base + suffix] = ("histogram" + suffix, base)
        for base in GAUGES:
            wanted[prefix + base] = ("gauge", base)
        wanted[prefix + CREATED] = ("created", CREATED)
    return wanted


WANTED = _wanted_names()
_NAME_END = re.compile(r"[{\s]")


@dataclass
class ReplicaSample:
    """One replica's cumulative counters (flat keys, see `flat key` below), gauges and start marker.

    Flat keys: "p" prompt tokens, "g" generation tokens, "r:<finished_reason>" finished requests,
    "h:<hist>:<le>" cumulative bucket count, "hs:<hist>" sum, "hc:<hist>" count.
    """

    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    created: float | None = None


# model_name -> replica key -> sample
Samples = dict[str, dict[str, ReplicaSample]]


@dataclass
class TargetResult:
    url: str
    fetched_at: dt.datetime
    ok: bool
    samples: Samples = field(default_factory=dict)
    error: str = ""
    transient: bool = False
    seconds: float = 0.0
    size: int = 0


class ScrapeError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def le_key(le: str) -> str:
    """Normalise a bucket bound so that "1", "1.0" and "1e0" are the same bucket; "+Inf" -> "inf"."""
    return repr(float(le))


def filter_text(text: str) -> str:
    """Only the lines of the samples Pareto reads (no HELP/TYPE: the parser does not need them for samples)."""
    keep: list[str] = []
    for line in text.splitlines():
        if not (line.startswith("vllm:") or line.startswith("ray_vllm_")):
            continue
        match = _NAME_END.search(line)
        name = line[: match.start()] if match else line
        if name in WANTED:
            keep.append(line)
    keep.append("")
    return "\n".join(keep)


def _replica_key(source: str, labels: dict[str, str]) -> str:
    parts = [source]
    parts.extend(f"{name}={labels[name]}" for name in REPLICA_LABELS if labels.get(name))
    return "|".join(parts)


def _add(samples: Samples, source: str, name: str, labels: dict[str, str], value: float) -> None:
    spec = WANTED.get(name)
    if spec is None:
        return
    model = labels.get("model_name")
    if not model:
        return
    kind, base = spec
    replica = samples.setdefault(model, {}).setdefault(_replica_key(source, labels), ReplicaSample())
    if kind == "counter":
        key = COUNTERS[base]
        if key == "r":
            key = f"r:{labels.get('finished_reason', '')}"
        replica.counters[key] = replica.counters.get(key, 0.0) + value
    elif kind == "histogram_bucket":
        le = labels.get("le")
        if le is None:
            return
        key = f"h:{HISTOGRAMS[base]}:{le_key(le)}"
        replica.counters[key] = replica.counters.get(key, 0.0) + value
    elif kind == "histogram_sum":
        key = f"hs:{HISTOGRAMS[base]}"
        replica.counters[key] = replica.counters.get(key, 0.0) + value
    elif kind == "histogram_count":
        key = f"hc:{HISTOGRAMS[base]}"
        replica.counters[key] = replica.counters.get(key, 0.0) + value
    elif kind == "gauge":
        key = GAUGES[base]
        replica.gauges[key] = replica.gauges.get(key, 0.0) + value
    elif kind == "created":
        replica.created = value if replica.created is None else min(replica.created, value)


def parse_text(text: str, *, source: str) -> Samples:
    """Prometheus text exposition -> samples by model and replica (see module docstring)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(filter_text(text)):
        for sample in family.samples:
            _add(samples, source, sample.name, sample.labels, float(sample.value))
    return samples


# --- fetching ------------------------------------------------------------------------------------
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # metrics endpoints are on the cluster network; no proxies from the environment
        session.headers["Accept"] = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
        _local.session = session
    return session


def _get(url: str, *, timeout: float, params: dict[str, str] | None = None) -> requests.Response:
    try:
        response = _session().get(url, timeout=timeout, params=params)
    except requests.Timeout as exc:
        raise ScrapeError(f"{url} did not answer within {timeout:g} s", transient=True) from exc
    except requests.ConnectionError as exc:
        raise ScrapeError(f"cannot connect to {url}: {exc}", transient=True) from exc
    except requests.RequestException as exc:
        raise ScrapeError(f"cannot fetch {url}: {exc}", transient=False) from exc
    if response.status_code >= 500:
        raise ScrapeError(f"{url} answered {response.status_code}", transient=True)
    if response.status_code >= 400:
        raise ScrapeError(f"{url} answered {response.status_code}: {response.text[:200]}", transient=False)
    return response


def fetch_text(url: str, *, timeout: float) -> TargetResult:
    started = time.perf_counter()
    fetched_at = dt.datetime.now(dt.UTC)
    try:
        response = _get(url, timeout=timeout)
        text = response.text
        samples = parse_text(text, source=url)
    except ScrapeError as exc:
        return TargetResult(url, fetched_at, ok=False, error=str(exc), transient=exc.transient)
    except ValueError as exc:  # the parser refused the text
        return TargetResult(url, fetched_at, ok=False, error=f"{url} is not Prometheus text: {exc}"[:500])
    return TargetResult(
        url, fetched_at, ok=True, samples=samples, seconds=time.perf_counter() - started, size=len(text)
    )


# --- Prometheus HTTP API -------------------------------------------------------------------------
_MODEL_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def prometheus_selector(model_ids: Iterable[str]) -> str:
    names = "|".join(sorted(re.escape(name) for name in WANTED))
    ids = sorted(set(model_ids))
    for model_id in ids:
        if not _MODEL_ID.match(model_id):
            raise ValueError(f"model id {model_id!r} cannot be used in a PromQL regex")
    # PromQL strings take Go escapes; a regex escape's backslash has to be doubled.
    names = names.replace("\\", "\\\\")
    return '{__name__=~"%s",model_name=~"%s"}' % (names, "|".join(ids).replace(".", "\\\\."))  # noqa: UP031


def fetch_prometheus(base_url: str, model_ids: Iterable[str], *, timeout: float, at: dt.datetime) -> TargetResult:
    """The latest value of every series Pareto reads, for these models, from Prometheus' instant-query API."""
    started = time.perf_counter()
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        query = prometheus_selector(model_ids)
        response = _get(url, timeout=timeout, params={"query": query, "time": f"{at.timestamp():.3f}"})
        body = response.json()
    except ScrapeError as exc:
        return TargetResult(base_url, at, ok=False, error=str(exc), transient=exc.transient)
    except ValueError as exc:
        return TargetResult(base_url, at, ok=False, error=f"{url}: {exc}"[:500])
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error", "unexpected answer") if isinstance(body, dict) else "unexpected answer"
        return TargetResult(base_url, at, ok=False, error=f"{url}: {error}"[:500])
    samples: Samples = {}
    for series in body.get("data", {}).get("result", []):
        labels = dict(series.get("metric", {}))
        name = labels.pop("__name__", "")
        try:
            value = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        _add(samples, base_url, name, labels, value)
    return TargetResult(
        base_url, at, ok=True, samples=samples, seconds=time.perf_counter() - started, size=len(response.content)
    )


# (cluster id, URL, model ids for a Prometheus query, or [] for a /metrics page)
Job = tuple[int, str, list[str]]


def fetch_all(jobs: Sequence[Job], *, timeout: float, parallel: int = 16) -> list[tuple[int, TargetResult]]:
    """Fetch and parse several targets at once: the I/O overlaps in threads (parsing holds the GIL anyway)."""

    def run(job: Job) -> tuple[int, TargetResult]:
        cluster_id, url, models = job
        if models:
            return cluster_id, fetch_prometheus(url, models, timeout=timeout, at=dt.datetime.now(dt.UTC))
        return cluster_id, fetch_text(url, timeout=timeout)

    if len(jobs) <= 1:
        return [run(job) for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(parallel, len(jobs))) as pool:
        return list(pool.map(run, jobs))
