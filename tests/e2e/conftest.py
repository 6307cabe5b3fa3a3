"""Fixtures for the end-to-end tests: a real Ray head serving vLLM, the tiny model, a real Celery worker and beat.

Nothing is replaced: the tests call Pareto's services as a person would, a Celery worker subprocess runs the
tasks against the test database through Redis, and the worker drives a local Ray head over its dashboard REST API.

- Session: the Ray head (docs/runtime.md's flags, on free ports so it never meets another Ray on the machine) and
  the tiny model, built once into a temporary directory.
- Package: database access. Rows must be committed for the worker to see them, so these tests run outside the
  per-test transaction of `db`; the package's rows are flushed at the end, as a transactional test does.
  Also the Celery worker and beat (beat's reconciler every few seconds), stopped when the package ends so that
  they never see another test's rows.

On the 2-core development machine each tiny vLLM application takes 75-115 s to start and ~3.4 GB of memory, so
the tests share one ready endpoint where they can and never keep more than two vLLM applications alive.
Without the runtime extras (scripts/install-runtime) the tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.services import user_create_local
from apps.audit.services import Actor
from apps.catalog.management.commands.build_tiny_model import catalog_fields
from apps.catalog.services import catalog_model_create
from apps.endpoints.models import Endpoint
from apps.inventory.models import Cluster
from apps.inventory.services import cluster_create, cluster_inventory_set, gpu_price_add, gpu_type_create
from apps.teams.models import Membership, Team
from apps.teams.services import membership_add, quota_set, team_create
from controlplane.launcher import rayhead

from .support import (
    RECONCILE_INTERVAL,
    ROOT,
    TIMINGS,
    CeleryProcesses,
    RayCluster,
    Started,
    Watcher,
    record,
    remove,
    request_endpoint,
    tail,
)

SYSTEM = Actor.system()
# CPUs Pareto may hand out on the test cluster: enough for the unschedulable request (16 > the head's 8).
CPU_INVENTORY = 32
DEPLOY_DEADLINE = "600"  # seconds; the default 900 would only make a stuck test slower to fail


def runtime_missing() -> list[str]:
    missing = [name for name in ("ray", "vllm", "torch", "transformers") if importlib.util.find_spec(name) is None]
    if not rayhead.ray_executable().exists():
        missing.append("the ray command")
    return missing


@pytest.fixture(scope="session")
def runtime() -> None:
    missing = runtime_missing()
    if missing:
        message = f"the serving runtime is not installed ({', '.join(missing)}): run scripts/install-runtime"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def ray_cluster(runtime: None) -> Iterator[RayCluster]:
    # Short on purpose: Ray puts Unix sockets under its temp dir, and their paths must fit in 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="pe2e-", dir="/tmp"))
    head = rayhead.RayHead.on_free_ports()
    started = time.monotonic()
    process = rayhead.start_detached(head, temp_dir=base / "ray", log=base / "ray-start.log", env=os.environ, cwd=ROOT)
    cluster = RayCluster(head=head, process=process, base=base)
    try:
        try:
            rayhead.wait_until_ready(head.dashboard_url, timeout=150, is_alive=lambda: process.poll() is None)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{tail(cluster.log)}")
        record("Ray head: ray start until the Serve REST API answers", time.monotonic() - started)
        yield cluster
    finally:
        stopping = time.monotonic()
        killed = rayhead.stop_session(process.pid)
        process.wait(timeout=10)
        forced = f"; SIGKILL after the grace period: {', '.join(killed)}" if killed else ""
        record(f"Ray head: stop (SIGTERM to its session{forced})", time.monotonic() - stopping)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model(runtime: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny Llama, built once. In a subprocess: torch stays out of the test process."""
    out = tmp_path_factory.mktemp("model") / "tiny-llama"
    code = (
        "import json, sys\n"
        "from apps.catalog.tinymodel import build_tiny_model\n"
        "print(json.dumps(build_tiny_model(sys.argv[1])))\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    record("tiny model: build", time.monotonic() - started)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _test_database_url() -> str:
    """The test database as a URL for the worker (pytest-django made it; the worker must use the same one)."""
    s = connection.settings_dict
    user = quote(s.get("USER") or "", safe="")
    password = quote(str(s.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = quote(s.get("HOST") or "", safe="")  # a socket directory is percent-encoded
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(s['NAME'], safe='')}"


@pytest.fixture(scope="package")
def e2e_db(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Committed rows (the worker must see them) for the whole package, flushed at its end."""
    from django.core.management import call_command

    # Never flush a real database: pytest-django must have switched the connection to its test database.
    assert connection.settings_dict["NAME"].startswith("test_"), connection.settings_dict["NAME"]
    with django_db_blocker.unblock():
        try:
            yield
        finally:
            connection.close()
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def db(e2e_db: None) -> None:
    """Stands in for pytest-django's `db` here. pytest-django makes its test database only for a session that has
    tests asking for `db` (or marked django_db); this `db` asks for it, and then opens no transaction per test,
    because the worker must see what the test commits (`e2e_db` gives the access instead)."""


@pytest.fixture(scope="package")
def world(e2e_db: None, ray_cluster: RayCluster, tiny_model: dict[str, Any]) -> dict[str, Any]:
    """A team with a lead, a CPU-only Ray cluster (the session's head) with CPUs as its "GPU" type, quota for
    them, and the tiny model twice in the catalog: as built, and claiming 8k context (for vLLM to refuse)."""
    team = team_create(actor=SYSTEM, slug="e2e", name="End to end")
    assert team.approval_policy == Team.ApprovalPolicy.AUTO
    lead = user_create_local(actor=SYSTEM, username="e2e-lead", password="e2e-lead-password-1")
    membership_add(actor=SYSTEM, team=team, user=lead, role=Membership.Role.LEAD)
    cpu = gpu_type_create(actor=SYSTEM, sku="CPU", memory_gib=1)
    gpu_price_add(
        actor=SYSTEM,
        gpu_type=cpu,
        hourly_price=Decimal("0.05"),
        effective_from=timezone.now() - dt.timedelta(days=1),
        is_example=True,
        note="example price",
    )
    head = ray_cluster.head
    cluster = cluster_create(
        actor=SYSTEM,
        name="e2e-ray",
        runtime=Cluster.Runtime.RAY,
        ray_dashboard_url=head.dashboard_url,
        ray_serve_url=head.serve_url,
        cpu_only=True,
        metrics_urls=head.metrics_url,
    )
    cluster_inventory_set(actor=SYSTEM, cluster=cluster, gpu_type=cpu, count=CPU_INVENTORY)
    quota_set(actor=SYSTEM, team=team, gpu_type=cpu, limit=CPU_INVENTORY)
    fields = catalog_fields(tiny_model)
    model = catalog_model_create(actor=SYSTEM, name="tiny-llama", recommended_gpu_type=cpu, **fields)
    long_context = catalog_model_create(
        actor=SYSTEM,
        name="tiny-llama-8k",
        recommended_gpu_type=cpu,
        **{**fields, "context_length": 8192, "default_engine_args": {"dtype": "bfloat16"}},
    )
    return {"team": team, "lead": lead, "cpu": cpu, "cluster": cluster, "model": model, "long_model": long_context}


@pytest.fixture(scope="package")
def celery(e2e_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryProcesses]:
    """A worker and beat as `./pareto up` runs them (prefork, 2 processes), against the test database."""
    from django.conf import settings

    logs = tmp_path_factory.mktemp("celery")
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "PARETO_DEPLOY_DEADLINE": DEPLOY_DEADLINE,
        "PARETO_RECONCILE_INTERVAL": RECONCILE_INTERVAL,
    }
    processes = CeleryProcesses(logs=logs, env=env)
    started = time.monotonic()
    try:
        processes.start_worker(purge=True)
        record("Celery worker: start until ready", time.monotonic() - started)
        processes.start_beat()
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def lead_actor(world: dict[str, Any]) -> Actor:
    return Actor(user=world["lead"], source_ip="127.0.0.1")


@pytest.fixture
def cleanup(world: dict[str, Any], ray_cluster: RayCluster, celery: CeleryProcesses) -> Iterator[list[Endpoint]]:
    """Endpoints a test made: whatever is left of them is deleted afterwards, and gone from Ray before the next
    test starts (a leftover vLLM application would cost the next test memory and a core)."""
    made: list[Endpoint] = []
    yield made
    remove(made, ray_cluster, celery)


@pytest.fixture(scope="package")
def early(world: dict[str, Any], celery: CeleryProcesses, ray_cluster: RayCluster) -> Iterator[dict[str, Started]]:
    """The package's two vLLM endpoints, requested together by the lead so that their 75-115 s starts overlap
    (two applications at most): "chat", which test_lifecycle shares, and "too-long", which vLLM refuses."""
    lead = Actor(user=world["lead"], source_ip="127.0.0.1")
    made: list[Endpoint] = []
    started: dict[str, Started] = {}
    for name, extra in (("chat", {}), ("too-long", {"model": world["long_model"], "max_model_len": 4096})):
        endpoint = request_endpoint(world, lead, made, name=name, **extra)
        watcher = Watcher(endpoint, ray_cluster)
        watcher.start()
        started[name] = Started(endpoint=endpoint, state_after_request=endpoint.state, watcher=watcher)
    try:
        yield started
    finally:
        for item in started.values():
            item.watcher.stop()
        remove(made, ray_cluster, celery)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("end-to-end timings (real Ray, vLLM and Celery on this machine)")
    for what, seconds in TIMINGS:
        terminalreporter.write_line(f"{seconds:8.1f} s  {what}")
