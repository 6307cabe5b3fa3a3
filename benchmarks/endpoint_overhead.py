"""How much time Pareto itself adds to an endpoint's rollout, on a real Ray head with a real Celery worker.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python benchmarks/endpoint_overhead.py [--endpoints 20]

Two intervals per endpoint, p50 and p95 over `--endpoints` endpoints (after one warm-up endpoint that also starts
Serve's controller and proxy):

- approval -> PUT: from the commit of the admin's approval to Ray receiving the PUT that carries the endpoint
  (Ray's own `last_deployed_time_s` of the application; the worker is idle and waiting, as in production).
- RUNNING -> ready: from the first GET in which Ray reports the application RUNNING to the first moment the
  portal's database row says `ready`. This script polls Ray's GET itself, back to back (~100 per second), and the
  row every 10 ms.

Everything runs with Pareto's default settings except the Serve application: `PARETO_SERVE_APP_BUILDER` points at
`apps.endpoints.runtime.lightapp.light_application`, a deployment that starts in about a second, so vLLM's start-up
(75-115 s on a small machine) does not drown what is measured. Endpoints are measured one at a time and deleted
after measuring, so each one sees the same cluster.

It starts and stops its own Ray head (free ports, `ray start` in its own session) and Celery worker, and makes and
drops its own database on the PostgreSQL server of DATABASE_URL. REDIS_URL should name a Redis database nobody
else uses: the worker purges its queue at start. Needs the runtime extras (scripts/install-runtime).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlplane.launcher import rayhead  # noqa: E402  (the repository must be on sys.path first)

LIGHT_BUILDER = "apps.endpoints.runtime.lightapp.light_application"
GOALS = {"approval -> PUT": 1.0, "RUNNING -> ready": 3.0}  # seconds, at p95


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


# --- processes ---------------------------------------------------------------------------------------------


@contextmanager
def database(server_url: str) -> Iterator[str]:
    """A fresh database on the server of `server_url`, dropped afterwards."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    name = f"pareto_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def ray_head(base: Path) -> Iterator[rayhead.RayHead]:
    head = rayhead.RayHead.on_free_ports()
    started = time.monotonic()
    process = rayhead.start_detached(head, temp_dir=base / "ray", log=base / "ray.log", env=os.environ, cwd=ROOT)
    try:
        rayhead.wait_until_ready(head.dashboard_url, timeout=180, is_alive=lambda: process.poll() is None)
        say(f"Ray head up in {time.monotonic() - started:.1f}s (dashboard {head.dashboard_url})")
        yield head
    finally:
        stopping = time.monotonic()
        killed = rayhead.stop_session(process.pid)
        process.wait(timeout=10)
        forced = f" (killed after the grace period: {', '.join(killed)})" if killed else ""
        say(f"Ray head stopped in {time.monotonic() - stopping:.1f}s{forced}")


@contextmanager
def celery_worker(base: Path, env: dict[str, str]) -> Iterator[None]:
    log = base / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--loglevel", "INFO",
             "--pool", "prefork", "--concurrency", "2", "--without-mingle", "--without-gossip", "--purge",
             "--hostname", f"bench-{uuid.uuid4().hex[:8]}@%h"],
            cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "ready." not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Celery worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- measuring ---------------------------------------------------------------------------------------------


class RayPoller(threading.Thread):
    """GETs Ray's applications back to back and remembers, per application, when it was first seen and first
    seen RUNNING, and the `last_deployed_time_s` it had when first seen (Ray's time of the PUT)."""

    def __init__(self, dashboard_url: str) -> None:
        super().__init__(name="ray-poller", daemon=True)
        self.dashboard_url = dashboard_url
        self.first_seen: dict[str, float] = {}
        self.deployed_at: dict[str, float] = {}
        self.running_at: dict[str, float] = {}
        self.polls = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        import requests

        session = requests.Session()
        session.trust_env = False
        url = f"{self.dashboard_url}/api/serve/applications/"
        while not self.stopping.is_set():
            sent = time.time()
            try:
                apps = session.get(url, timeout=10).json().get("applications") or {}
            except (requests.RequestException, ValueError):
                time.sleep(0.05)
                continue
            # The answer describes Ray somewhere between sending and receiving: take the middle.
            seen = (sent + time.time()) / 2
            self.polls += 1
            for name, app in apps.items():
                if name not in self.first_seen:
                    self.first_seen[name] = seen
                    self.deployed_at[name] = float(app.get("last_deployed_time_s") or seen)
                if app.get("status") == "RUNNING" and name not in self.running_at:
                    self.running_at[name] = seen

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


@dataclass
class Sample:
    committed: float
    put: float
    first_seen: float
    running: float
    ready: float

    @property
    def approval_to_put(self) -> float:
        return self.put - self.committed

    @property
    def running_to_ready(self) -> float:
        return self.ready - self.running


def wait_for(check: Any, *, timeout: float, every: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def measure_one(index: int, world: dict[str, Any], poller: RayPoller) -> Sample:
    from django.db import transaction

    from apps.endpoints import services
    from apps.endpoints.models import Endpoint

    endpoint = services.endpoint_request(
        actor=world["lead"], team=world["team"], name=f"bench-{index}", model=world["model"], cluster=world["cluster"]
    )
    assert endpoint.state == Endpoint.State.PENDING_APPROVAL, endpoint.state_message
    stamps: dict[str, float] = {}
    with transaction.atomic():
        # Registered before the approval's own hook (which enqueues the apply), so it runs first after COMMIT.
        transaction.on_commit(lambda: stamps.setdefault("committed", time.time()))
        services.endpoint_approve(actor=world["admin"], endpoint=endpoint)
    name = endpoint.app_name

    def ready() -> float | None:
        state = Endpoint.objects.values_list("state", flat=True).get(pk=endpoint.pk)
        if state == Endpoint.State.FAILED:
            raise SystemExit(f"{endpoint} failed: {Endpoint.objects.get(pk=endpoint.pk).state_message}")
        return time.time() if state == Endpoint.State.READY else None

    ready_at = wait_for(ready, timeout=120, every=0.01, what=f"{endpoint} to be ready")
    wait_for(lambda: name in poller.running_at, timeout=10, every=0.01, what=f"Ray to report {name} RUNNING")
    sample = Sample(
        committed=stamps["committed"],
        put=poller.deployed_at[name],
        first_seen=poller.first_seen[name],
        running=poller.running_at[name],
        ready=ready_at,
    )
    endpoint.refresh_from_db()
    services.endpoint_delete(actor=world["admin"], endpoint=endpoint)
    wait_for(
        lambda: Endpoint.objects.values_list("state", flat=True).get(pk=endpoint.pk) == Endpoint.State.DELETED,
        timeout=120,
        every=0.05,
        what=f"{endpoint} to be deleted",
    )
    return sample


def make_world(head: rayhead.RayHead) -> dict[str, Any]:
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from apps.accounts.services import user_create_local
    from apps.audit.services import Actor
    from apps.catalog.services import catalog_model_create
    from apps.inventory.models import Cluster
    from apps.inventory.services import cluster_create, cluster_inventory_set, gpu_price_add, gpu_type_create
    from apps.teams.models import Membership, Team
    from apps.teams.services import membership_add, quota_set, team_create, team_update

    system = Actor.system()
    team = team_create(actor=system, slug="bench", name="Benchmark")
    # Requests wait for an admin, so the approval is a separate commit that can be timed.
    team = team_update(actor=system, team=team, approval_policy=Team.ApprovalPolicy.REVIEW)
    lead = user_create_local(actor=system, username="bench-lead", password=uuid.uuid4().hex)
    admin = user_create_local(actor=system, username="bench-admin", password=uuid.uuid4().hex, is_platform_admin=True)
    membership_add(actor=system, team=team, user=lead, role=Membership.Role.LEAD)
    cpu = gpu_type_create(actor=system, sku="CPU", memory_gib=1)
    gpu_price_add(
        actor=system,
        gpu_type=cpu,
        hourly_price=Decimal("0.05"),
        effective_from=timezone.now() - timedelta(days=1),
        is_example=True,
    )
    cluster = cluster_create(
        actor=system,
        name="bench-ray",
        runtime=Cluster.Runtime.RAY,
        ray_dashboard_url=head.dashboard_url,
        ray_serve_url=head.serve_url,
        cpu_only=True,
    )
    cluster_inventory_set(actor=system, cluster=cluster, gpu_type=cpu, count=64)
    quota_set(actor=system, team=team, gpu_type=cpu, limit=64)
    model = catalog_model_create(
        actor=system,
        name="light",
        source="light",
        parameter_count=1,
        context_length=2048,
        num_layers=1,
        hidden_size=64,
        num_attention_heads=1,
        num_kv_heads=1,
        head_dim=64,
        recommended_gpu_type=cpu,
    )
    return {"team": team, "lead": Actor(user=lead), "admin": Actor(user=admin), "cluster": cluster, "model": model}


def report(samples: list[Sample], warmup: Sample, polls: int, elapsed: float) -> bool:
    rows = {
        "approval -> PUT": [s.approval_to_put for s in samples],
        "RUNNING -> ready": [s.running_to_ready for s in samples],
        "(Ray) PUT -> RUNNING": [s.running - s.put for s in samples],
        "(Ray) PUT -> first GET that shows it": [s.first_seen - s.put for s in samples],
    }
    print()
    print(f"Control-plane overhead over {len(samples)} endpoints (light Serve app, default settings)")
    print(f"{'interval':<38}{'p50':>9}{'p95':>9}{'min':>9}{'max':>9}{'mean':>9}")
    met = True
    for name, values in rows.items():
        p50, p95 = percentile(values, 50), percentile(values, 95)
        print(
            f"{name:<38}{p50:>8.3f}s{p95:>8.3f}s{min(values):>8.3f}s{max(values):>8.3f}s"
            f"{statistics.fmean(values):>8.3f}s"
        )
        if name in GOALS:
            met &= p95 < GOALS[name]
    print(
        f"warm-up endpoint (starts Serve): approval -> PUT {warmup.approval_to_put:.3f}s, "
        f"RUNNING -> ready {warmup.running_to_ready:.3f}s"
    )
    print(f"Ray GETs by the poller: {polls} in {elapsed:.0f}s ({polls / elapsed:.0f}/s)")
    verdict = "met" if met else "NOT met"
    print(f"goals at p95: approval -> PUT < {GOALS['approval -> PUT']:.0f}s, RUNNING -> ready < "
          f"{GOALS['RUNNING -> ready']:.0f}s: {verdict}")  # fmt: skip
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=20, help="endpoints measured (after one warm-up)")
    args = parser.parse_args()
    if args.endpoints < 1:
        parser.error("--endpoints must be 1 or more")
    for name in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(name):
            parser.error(f"set {name} (see the docstring)")

    base = Path(tempfile.mkdtemp(prefix="pbench-", dir="/tmp"))  # short: Ray's socket paths must fit
    with database(os.environ["DATABASE_URL"]) as db_url:
        os.environ.update(
            DATABASE_URL=db_url,
            PARETO_SECRET_KEY=os.environ.get("PARETO_SECRET_KEY") or uuid.uuid4().hex,
            PARETO_HTTPS="false",
            PARETO_SERVE_APP_BUILDER=LIGHT_BUILDER,
            DJANGO_SETTINGS_MODULE="controlplane.settings",
        )
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        say(f"database {db_url.rsplit('/', 1)[-1]} migrated; logs in {base}")
        with ray_head(base) as head, celery_worker(base, dict(os.environ)):
            world = make_world(head)
            poller = RayPoller(head.dashboard_url)
            poller.start()
            started = time.monotonic()
            try:
                warmup = measure_one(0, world, poller)
                say(f"warm-up done: approval -> PUT {warmup.approval_to_put:.3f}s")
                samples = []
                for index in range(1, args.endpoints + 1):
                    sample = measure_one(index, world, poller)
                    samples.append(sample)
                    say(
                        f"endpoint {index:>3}: approval -> PUT {sample.approval_to_put:.3f}s, "
                        f"Ray PUT -> RUNNING {sample.running - sample.put:.3f}s, "
                        f"RUNNING -> ready {sample.running_to_ready:.3f}s"
                    )
            finally:
                poller.stop()
            report(samples, warmup, poller.polls, time.monotonic() - started)
    shutil.rmtree(base, ignore_errors=True)  # kept, with the Ray and worker logs, only when something failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
