"""Helpers for the end-to-end tests: the Celery processes, waiting with useful failure messages, Ray's view."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from apps.endpoints.models import APP_PREFIX, Endpoint
from controlplane.launcher.rayhead import RayHead

ROOT = Path(__file__).resolve().parents[2]
RECONCILE_INTERVAL = "5"  # seconds between beat's reconciles in these tests (PARETO_RECONCILE_INTERVAL)
T = TypeVar("T")

# What the tests saw, printed at the end of the run (tests/e2e/conftest.py: pytest_terminal_summary).
TIMINGS: list[tuple[str, float]] = []


def record(what: str, seconds: float) -> None:
    TIMINGS.append((what, seconds))


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class RayCluster:
    """The session's Ray head (`ray start --head --block`, its own session) and where its files are."""

    head: RayHead
    process: subprocess.Popen[bytes]
    base: Path

    @property
    def log(self) -> Path:
        return self.base / "ray-start.log"

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # the machine's proxy settings must not capture 127.0.0.1
        return session

    def status(self) -> dict[str, Any]:
        response = self.session().get(f"{self.head.dashboard_url}/api/serve/applications/", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def applications(self) -> dict[str, Any]:
        return dict(self.status().get("applications") or {})

    def ours(self) -> dict[str, Any]:
        """Pareto's applications (named `pareto-<id>`) as Ray reports them."""
        return {name: app for name, app in self.applications().items() if name.startswith(APP_PREFIX)}

    def describe(self, name: str) -> str:
        app = self.applications().get(name)
        if app is None:
            return f"{name}: not in Ray"
        parts = [f"{name}: {app.get('status')} {str(app.get('message') or '')[-500:]}"]
        for dep_name, dep in (app.get("deployments") or {}).items():
            states = [r.get("state") for r in dep.get("replicas") or []]
            parts.append(f"  {dep_name}: {dep.get('status')} replicas={states} {str(dep.get('message') or '')[-300:]}")
        return "\n".join(parts)


@dataclass
class CeleryProcesses:
    """A real Celery worker (and beat) against the test database, started and killed the way production is."""

    logs: Path
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None
    worker_logs: list[Path] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)

    def _start(self, argv: list[str], log: Path, extra: Mapping[str, str]) -> subprocess.Popen[bytes]:
        env = {**self.env, **extra, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "controlplane", *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_worker(self, *, purge: bool = False, **overrides: str) -> None:
        """Start a worker; `overrides` are environment variables (settings) for this worker only."""
        assert self.worker is None or self.worker.poll() is not None, "a worker is already running"
        log = self.logs / f"worker-{len(self.worker_logs) + 1}.log"
        self.worker_logs.append(log)
        self.overrides = dict(overrides)
        argv = [
            "worker", "--loglevel", "INFO", "--pool", "prefork", "--concurrency", "2",
            "--without-mingle", "--without-gossip", "--hostname", f"e2e-{uuid.uuid4().hex[:8]}@%h",
        ]  # fmt: skip
        if purge:
            argv.append("--purge")  # messages other tests left in this Redis database are not ours
        self.worker = self._start(argv, log, overrides)
        wait_until(
            lambda: "ready." in log.read_text(errors="replace"),
            timeout=90,
            what="the Celery worker to start",
            context=lambda: tail(log),
            alive=lambda: self.worker is not None and self.worker.poll() is None,
        )

    def start_beat(self) -> None:
        log = self.logs / "beat.log"
        self.beat = self._start(["beat", "--loglevel", "INFO", "--schedule", str(self.logs / "beat-schedule")], log, {})

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool processes at once: no warm shutdown, nothing acknowledged."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop_worker(self) -> None:
        if self.worker is not None:
            _stop(self.worker)

    def restart_worker(self, **overrides: str) -> None:
        self.stop_worker()
        self.start_worker(**overrides)

    def stop_all(self) -> None:
        if self.beat is not None:
            _stop(self.beat)
        self.stop_worker()

    def worker_log(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.worker_logs if log.exists())

    def context(self) -> str:
        return "worker log (last lines):\n" + (tail(self.worker_logs[-1]) if self.worker_logs else "(none)")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    every: float = 0.25,
    context: Callable[[], str] | None = None,
    alive: Callable[[], bool] | None = None,
) -> T:
    """Call `check` until it returns something truthy; fail with `what` and `context()` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if alive is not None and not alive():
            raise AssertionError(f"gave up waiting for {what}: the process died\n{context() if context else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}\n{context() if context else ''}")
        time.sleep(every)


@dataclass
class Transitions:
    """The states an endpoint went through as seen by polling the database, with seconds since `started`."""

    started: float = field(default_factory=time.monotonic)
    seen: list[tuple[str, float]] = field(default_factory=list)

    def note(self, state: str) -> None:
        if not self.seen or self.seen[-1][0] != state:
            self.seen.append((state, time.monotonic() - self.started))

    def at(self, state: str) -> float:
        return next(t for s, t in self.seen if s == state)

    def states(self) -> list[str]:
        return [s for s, _ in self.seen]


def look(endpoint: Endpoint, transitions: Transitions, unexpected: Iterable[str] = (Endpoint.State.FAILED,)) -> str:
    """Refresh the endpoint, note its state, and fail at once if it is in an `unexpected` state."""
    endpoint.refresh_from_db()
    transitions.note(endpoint.state)
    if endpoint.state in set(unexpected):
        raise AssertionError(f"{endpoint} went {endpoint.state}: {endpoint.state_message}\nseen: {transitions.seen}")
    return endpoint.state


def wait_for_state(
    endpoint: Endpoint,
    states: Iterable[str],
    *,
    timeout: float,
    transitions: Transitions | None = None,
    unexpected: Iterable[str] = (Endpoint.State.FAILED,),
    context: Callable[[], str] | None = None,
) -> Endpoint:
    """Poll the endpoint's row until it is in one of `states`; fail at once in an `unexpected` state."""
    wanted, bad = set(states), set(unexpected) - set(states)
    transitions = transitions or Transitions()

    def check() -> bool:
        endpoint.refresh_from_db()
        transitions.note(endpoint.state)
        if endpoint.state in bad:
            raise AssertionError(
                f"{endpoint} went {endpoint.state}: {endpoint.state_message}\n{context() if context else ''}"
            )
        return endpoint.state in wanted

    def describe() -> str:
        now = f"now {endpoint.state}: {endpoint.state_message[-800:]}\nseen: {transitions.seen}"
        return f"{now}\n{context() if context else ''}"

    wait_until(check, timeout=timeout, what=f"{endpoint} to be {'/'.join(sorted(wanted))}", every=0.2, context=describe)
    return endpoint


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    return ANSI.sub("", text)


def request_endpoint(world: Mapping[str, Any], actor: Any, made: list[Endpoint], **fields: Any) -> Endpoint:
    """`endpoint_request` as the lead would call it, remembered for the `cleanup` fixture."""
    from apps.endpoints.services import endpoint_request

    fields = {"team": world["team"], "model": world["model"], "cluster": world["cluster"], **fields}
    endpoint = endpoint_request(actor=actor, **fields)
    made.append(endpoint)
    return endpoint


class Watcher(threading.Thread):
    """Follows one endpoint in the background from its request on: the states its row passes through, and when
    Ray first reported its application RUNNING (polled here, beside the database, to see when Pareto noticed)."""

    def __init__(self, endpoint: Endpoint, ray_cluster: RayCluster, *, every: float = 0.2) -> None:
        super().__init__(name=f"watch-{endpoint.pk}", daemon=True)
        self.endpoint_id, self.ray_cluster, self.every = endpoint.pk, ray_cluster, every
        self.transitions = Transitions()
        self.ray_running_at: float | None = None
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stopping.is_set():
                state = Endpoint.objects.values_list("state", flat=True).get(pk=self.endpoint_id)
                self.transitions.note(state)
                if self.ray_running_at is None:
                    app = self.ray_cluster.applications().get(f"{APP_PREFIX}{self.endpoint_id}") or {}
                    if app.get("status") == "RUNNING":
                        self.ray_running_at = time.monotonic() - self.transitions.started
                if state in (*Endpoint.FINAL, Endpoint.State.FAILED):
                    return
                self.stopping.wait(self.every)
        except BaseException as exc:  # reported by the test that reads the watcher
            self.error = exc
        finally:
            connection.close()  # this thread's own connection; the database is flushed at the end

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def seen(self, state: str, timeout: float = 10) -> float:
        """Seconds from the request until the watcher saw `state` (waiting for it to notice), then stop it."""
        wait_until(lambda: state in self.transitions.states(), timeout=timeout, what=f"the watcher to see {state}")
        self.stop()
        if self.error is not None:
            raise AssertionError(f"the watcher failed: {self.error!r}")
        return self.transitions.at(state)


@dataclass
class Started:
    """An endpoint requested at the start of the package, and the watcher following it."""

    endpoint: Endpoint
    state_after_request: str
    watcher: Watcher


def remove(endpoints: Iterable[Endpoint], ray_cluster: RayCluster, celery: CeleryProcesses) -> None:
    """Delete what is left of `endpoints` and wait until Ray no longer has their applications."""
    from apps.audit.services import Actor
    from apps.endpoints.services import endpoint_delete

    endpoints = list(endpoints)
    for endpoint in endpoints:
        endpoint.refresh_from_db()
        if endpoint.state not in (*Endpoint.FINAL, Endpoint.State.DELETING):
            endpoint_delete(actor=Actor.system(), endpoint=endpoint)
    names = {endpoint.app_name for endpoint in endpoints}
    wait_until(
        lambda: not names & set(ray_cluster.applications()),
        timeout=120,
        what=f"{sorted(names)} to leave Ray",
        every=0.5,
        context=celery.context,
    )
