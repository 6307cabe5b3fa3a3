"""A cluster whose metrics come from an existing Prometheus server: the same series through its HTTP API.

Runs the real Prometheus (Debian's `prometheus` package) scraping a local /metrics page every second. Skipped when
the `prometheus` binary is not installed (`apt-get install prometheus`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.inventory.models import Cluster
from apps.metering.ingest import scrape_cluster
from apps.metering.models import ScrapeTarget, UsageMinute

from .factories import metered_endpoint
from .helpers import Replica, exposition

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="the prometheus binary is not installed (apt-get install prometheus)"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def prometheus(metrics_server, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: vllm\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_server.port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _scraped_by_prometheus(metrics_server, before: int) -> None:
    deadline = time.monotonic() + 20
    while metrics_server.hits.get("/metrics", 0) <= before + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.2)  # the sample is queryable once the scrape is appended


def test_usage_read_from_prometheus_equals_the_servers_counters(team_a, metrics_server, prometheus):
    endpoint = metered_endpoint(team=team_a)
    Cluster.objects.filter(pk=endpoint.cluster_id).update(
        metrics_source=Cluster.MetricsSource.PROMETHEUS, prometheus_url=prometheus
    )
    replica = Replica(endpoint.served_model_id)
    replica.serve(prompt=120, generation=30, reason="stop")
    metrics_server.pages["/metrics"] = exposition([replica])
    _scraped_by_prometheus(metrics_server, 0)
    report = scrape_cluster(cluster_id=endpoint.cluster_id)
    assert report.failed == [], report.message
    assert sum(r.prompt_tokens for r in UsageMinute.objects.all()) == 120
    for _ in range(3):
        replica.serve(prompt=10, generation=5)
    metrics_server.pages["/metrics"] = exposition([replica])
    _scraped_by_prometheus(metrics_server, metrics_server.hits["/metrics"])
    scrape_cluster(cluster_id=endpoint.cluster_id)
    rows = list(UsageMinute.objects.all())
    assert sum(r.prompt_tokens for r in rows) == 150
    assert sum(r.generation_tokens for r in rows) == 45
    assert sum(r.requests for r in rows) == 4
    assert ScrapeTarget.objects.get(url=prometheus).last_error == ""
