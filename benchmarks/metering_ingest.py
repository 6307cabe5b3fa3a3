"""Benchmark: metering ingest throughput, and its CPU per scrape next to Prometheus scraping the same targets.

    DATABASE_URL=... REDIS_URL=... PARETO_SECRET_KEY=x .venv/bin/python benchmarks/metering_ingest.py \
        [--endpoints 200] [--per-cluster 50] [--rounds 6] [--prometheus-seconds 60]

What is measured:
- N endpoints, each a plain vLLM server's real /metrics page (the 50 KB vLLM 0.32 fixture, its counters moving on
  every round), served by a separate local HTTP server process.
- Pareto: `ingest.scrape_clusters` over batches of clusters of about 100 endpoints (clusters of `--per-cluster`
  endpoints, each endpoint its own target), as the worker task does: fetch, parse with prometheus_client, deltas,
  one transaction per batch.
  CPU = this process (all threads) + its PostgreSQL backend, over the rounds after a warm-up round.
- Prometheus (the Debian package, if installed): the same N targets at a 5 s interval for `--prometheus-seconds`,
  CPU of the prometheus process over that time divided by the scrapes the server answered.
Goal: 1,000 endpoints per 15 s per worker core, i.e. at most 15 ms of CPU per endpoint scrape.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from metering_common import db_backend_pid, django_setup, process_cpu, start_server, test_database


def measure_pareto(args: argparse.Namespace) -> dict[str, float]:
    import os

    from apps.endpoints.models import Endpoint
    from apps.endpoints.tests.factories import EndpointFactory
    from apps.inventory.models import Cluster
    from apps.inventory.tests.factories import ClusterFactory, GpuPriceFactory, GpuTypeFactory
    from apps.metering.ingest import scrape_clusters
    from apps.metering.models import UsageMinute
    from apps.metering.tasks import SCRAPE_BATCH
    from apps.teams.tests.factories import TeamFactory

    gpu = GpuTypeFactory(sku="H100-80GB")
    GpuPriceFactory(gpu_type=gpu)
    team = TeamFactory()
    clusters: list[Cluster] = [cast("Cluster", ClusterFactory()) for _ in range(-(-args.endpoints // args.per_cluster))]
    endpoints: list[Endpoint] = [
        cast(
            "Endpoint",
            EndpointFactory(team=team, gpu_type=gpu, cluster=clusters[i // args.per_cluster], name=f"ep-{i}"),
        )
        for i in range(args.endpoints)
    ]
    server = start_server([e.served_model_id for e in endpoints], args.rounds)
    try:
        for cluster in clusters:
            members = [i for i, e in enumerate(endpoints) if e.cluster_id == cluster.pk]
            cluster.metrics_urls = "\n".join(f"http://127.0.0.1:{server.port}/ep/{i}/metrics" for i in members)
            cluster.save()
        # As `metering.scrape_all` does: batches of clusters holding about SCRAPE_BATCH endpoints each.
        per_batch = max(1, SCRAPE_BATCH // args.per_cluster)
        batches = [[c.pk for c in clusters[i : i + per_batch]] for i in range(0, len(clusters), per_batch)]
        backend = db_backend_pid()
        me = os.getpid()
        timings = []
        for number in range(args.rounds):
            server.set_round(number)
            cpu0, db0, wall0 = process_cpu(me), process_cpu(backend), time.perf_counter()
            for batch in batches:
                for report in scrape_clusters(cluster_ids=batch):
                    assert not report.failed, report.message
            timings.append((process_cpu(me) - cpu0, process_cpu(backend) - db0, time.perf_counter() - wall0))
            time.sleep(1.05)  # the next round is a later scrape (scrapes at or before the last one are refused)
        measured = timings[1:]  # round 0 warms up (first sight of every replica, layouts, connections)
        scrapes = args.endpoints * len(measured)
        cpu = sum(t[0] for t in measured)
        db = sum(t[1] for t in measured)
        wall = sum(t[2] for t in measured)
        booked = sum(UsageMinute.objects.values_list("prompt_tokens", flat=True))
        expected = args.endpoints * (2013 + (args.rounds - 1) * 100)
        assert booked == expected, (booked, expected)
        return {
            "endpoint_scrapes": scrapes,
            "wall_s": wall,
            "scrapes_per_s_wall": scrapes / wall,
            "worker_cpu_ms_per_scrape": 1000 * cpu / scrapes,
            "postgres_cpu_ms_per_scrape": 1000 * db / scrapes,
            "total_cpu_ms_per_scrape": 1000 * (cpu + db) / scrapes,
            "endpoints_per_15s_per_core": 15 / ((cpu + db) / scrapes),
            "endpoints_per_15s_per_core_worker_only": 15 / (cpu / scrapes),
        }
    finally:
        server.stop()


def measure_prometheus(args: argparse.Namespace) -> dict[str, float] | None:
    binary = shutil.which("prometheus")
    if args.prometheus_seconds <= 0:
        return None
    if binary is None:
        print("prometheus is not installed (apt-get install prometheus): measuring Pareto only")
        return None
    models = [f"bench-{i}" for i in range(args.endpoints)]
    server = start_server(models, 1)
    workdir = Path(tempfile.mkdtemp(prefix="prom-bench-"))
    targets = "".join(
        f"      - targets: ['127.0.0.1:{server.port}']\n        labels: {{__metrics_path__: /ep/{i}/metrics}}\n"
        for i in range(args.endpoints)
    )
    (workdir / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {args.prometheus_interval}s\n  scrape_timeout: 4s\n"
        f"scrape_configs:\n  - job_name: vllm\n    static_configs:\n{targets}"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--web.listen-address=127.0.0.1:0",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3 * args.prometheus_interval)  # start-up and the first scrapes (new series) are not measured
        cpu0, hits0 = process_cpu(process.pid), server.hits()
        time.sleep(args.prometheus_seconds)
        cpu, hits = process_cpu(process.pid) - cpu0, server.hits() - hits0
        return {"scrapes": hits, "cpu_s": cpu, "cpu_ms_per_scrape": 1000 * cpu / hits if hits else float("nan")}
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--per-cluster", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--prometheus-seconds", type=float, default=60)
    parser.add_argument("--prometheus-interval", type=float, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    django_setup()
    with test_database():
        ours = measure_pareto(args)
    theirs = measure_prometheus(args)
    result: dict[str, Any] = {"pareto": ours, "prometheus": theirs}
    if theirs and theirs["scrapes"]:
        result["cpu_ratio_pareto_total_to_prometheus"] = ours["total_cpu_ms_per_scrape"] / theirs["cpu_ms_per_scrape"]
        result["cpu_ratio_pareto_worker_to_prometheus"] = ours["worker_cpu_ms_per_scrape"] / theirs["cpu_ms_per_scrape"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
