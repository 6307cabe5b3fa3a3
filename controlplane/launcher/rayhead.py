"""A local Ray head: `ray start --head --block` in its own session, stopped as that whole session.

Used by `./pareto up` (the demo's default cluster), the end-to-end tests and the overhead benchmark. Measured facts
behind the flags are in docs/runtime.md:

- `--port`: Ray's default GCS port 6379 is Redis's; a Redis listening there makes `ray start` fail.
- `--metrics-export-port` must lie outside the worker port range, so the range is moved.
- `--num-cpus=8` on small machines: with exactly 2 logical CPUs a rolling update deadlocks.
- `RAY_num_workers_soft_limit=0`: otherwise every replica start leaves an idle ~440 MB worker behind.

Ray starts its workers (and vLLM its engine processes) in process groups of their own, but all of them stay in the
session of `ray start`; so stopping means signalling every process of that session, not only a process group.
`ray stop` is never used: it stops every Ray on the machine, including ones this process did not start.

This module does not import Django or Ray (Ray is only run as a program).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

NUM_CPUS = 8
# The local cluster of `./pareto up`; seed_demo's "local-ray" cluster points at the same ports (same variables).
DEFAULT_GCS_PORT = 6390
DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_SERVE_PORT = 8100  # Serve's own default, 8000, is Pareto's web port
DEFAULT_METRICS_PORT = 18080
DEFAULT_WORKER_PORTS = (20000, 29999)
# A Unix socket path (under the temp dir) must fit in 107 bytes; Ray adds about 60 to its temp dir.
MAX_TEMP_DIR = 40


@dataclass(frozen=True)
class RayHead:
    """Where a local Ray head listens. Ports left at 0 are Ray's choice."""

    gcs_port: int
    dashboard_port: int
    serve_port: int
    metrics_port: int
    min_worker_port: int
    max_worker_port: int
    node_manager_port: int = 0
    object_manager_port: int = 0
    dashboard_agent_grpc_port: int = 0
    dashboard_agent_listen_port: int = 0
    runtime_env_agent_port: int = 0
    client_server_port: int = 0
    host: str = "127.0.0.1"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def serve_url(self) -> str:
        return f"http://{self.host}:{self.serve_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def listening_ports(self) -> dict[str, int]:
        """The fixed ports the head and Serve will bind, by what uses them."""
        ports = {
            "Ray GCS": self.gcs_port,
            "Ray dashboard": self.dashboard_port,
            "Ray Serve HTTP": self.serve_port,
            "Ray metrics export": self.metrics_port,
            "Ray node manager": self.node_manager_port,
            "Ray object manager": self.object_manager_port,
            "Ray dashboard agent (gRPC)": self.dashboard_agent_grpc_port,
            "Ray dashboard agent (HTTP)": self.dashboard_agent_listen_port,
            "Ray runtime-env agent": self.runtime_env_agent_port,
            "Ray client server": self.client_server_port,
        }
        return {name: port for name, port in ports.items() if port}

    @classmethod
    def local(cls, env: Mapping[str, str]) -> RayHead:
        """The `./pareto up` head: fixed ports, each overridable with its PARETO_RAY_*_PORT variable."""

        def port(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ValueError(f"{name} must be a port number, not {raw!r}")
            return int(raw)

        return cls(
            gcs_port=port("PARETO_RAY_GCS_PORT", DEFAULT_GCS_PORT),
            dashboard_port=port("PARETO_RAY_DASHBOARD_PORT", DEFAULT_DASHBOARD_PORT),
            serve_port=port("PARETO_RAY_SERVE_PORT", DEFAULT_SERVE_PORT),
            metrics_port=port("PARETO_RAY_METRICS_PORT", DEFAULT_METRICS_PORT),
            min_worker_port=DEFAULT_WORKER_PORTS[0],
            max_worker_port=DEFAULT_WORKER_PORTS[1],
        )

    @classmethod
    def on_free_ports(cls, worker_ports: int = 200) -> RayHead:
        """Every port free right now, and a free-looking worker range: for a second head beside another one
        (tests, benchmark), where Ray's own defaults would collide."""
        taken: set[int] = set()

        def pick() -> int:
            while True:
                candidate = free_port()
                if candidate not in taken:
                    taken.add(candidate)
                    return candidate

        fixed = [pick() for _ in range(10)]
        low = _free_range(worker_ports, avoid=taken)
        return cls(
            gcs_port=fixed[0],
            dashboard_port=fixed[1],
            serve_port=fixed[2],
            metrics_port=fixed[3],
            node_manager_port=fixed[4],
            object_manager_port=fixed[5],
            dashboard_agent_grpc_port=fixed[6],
            dashboard_agent_listen_port=fixed[7],
            runtime_env_agent_port=fixed[8],
            client_server_port=fixed[9],
            min_worker_port=low,
            max_worker_port=low + worker_ports - 1,
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _free_range(size: int, *, avoid: set[int]) -> int:
    """The start of `size` consecutive ports below the kernel's ephemeral range that are free now (best effort:
    Ray binds them later, one per worker)."""
    import random

    rng = random.Random()  # noqa: S311 - spreading ranges, not security
    for _ in range(50):
        low = rng.randrange(30000, 32000 - size)
        span = range(low, low + size)
        if not avoid.intersection(span) and not any(port_in_use(p) for p in span[:: max(size // 20, 1)]):
            return low
    raise RuntimeError(f"found no free range of {size} ports between 30000 and 32000")


def temp_dir_for(base: Path) -> Path:
    """Ray's temp dir for a head whose state lives under `base`: `base/ray` when that is short enough for Ray's
    Unix sockets, else a short path under /tmp named after `base` (so one `base` always gets the same one)."""
    inside = (base / "ray").resolve()
    if len(str(inside)) <= MAX_TEMP_DIR:
        return inside
    digest = hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"pareto-ray-{os.getuid()}-{digest}"  # noqa: S108 - short on purpose, owner-only


def ray_executable(python: str = sys.executable) -> Path:
    return Path(python).parent / "ray"


def start_argv(head: RayHead, *, temp_dir: Path, ray: Path | None = None, num_cpus: int = NUM_CPUS) -> list[str]:
    argv = [
        str(ray or ray_executable()), "start", "--head", "--block",
        f"--port={head.gcs_port}",
        f"--num-cpus={num_cpus}",
        f"--dashboard-host={head.host}",
        f"--dashboard-port={head.dashboard_port}",
        f"--metrics-export-port={head.metrics_port}",
        f"--min-worker-port={head.min_worker_port}",
        f"--max-worker-port={head.max_worker_port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        "--log-style=record",  # plain lines in Pareto's output and logs, no colours
        "--log-color=false",
    ]  # fmt: skip
    optional = {
        "--node-manager-port": head.node_manager_port,
        "--object-manager-port": head.object_manager_port,
        "--dashboard-agent-grpc-port": head.dashboard_agent_grpc_port,
        "--dashboard-agent-listen-port": head.dashboard_agent_listen_port,
        "--runtime-env-agent-port": head.runtime_env_agent_port,
        "--ray-client-server-port": head.client_server_port,
    }
    argv += [f"{flag}={port}" for flag, port in optional.items() if port]
    return argv


# Pareto's own configuration (the secret key, database and Redis passwords) has no business in Ray: every Serve
# replica inherits the head's environment.
_PRIVATE = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


def start_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for `ray start`: no idle workers kept, no usage reporting, no proxies for local calls,
    and none of Pareto's settings."""
    out = {k: v for k, v in env.items() if k not in _PRIVATE and not k.startswith("PARETO_")}
    out["RAY_num_workers_soft_limit"] = "0"
    # On SIGTERM `ray start --block` first asks the GCS to drain the node (for a Kubernetes pod whose replicas can
    # move elsewhere) and waits up to 30 s; a single local head has nowhere to move them, and when the GCS is
    # stopping too the request just hangs until the timeout.
    out["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    out["RAY_USAGE_STATS_ENABLED"] = "0"
    out.setdefault("NO_PROXY", "127.0.0.1,localhost")
    out.setdefault("no_proxy", out["NO_PROXY"])
    # The head's own settings must not leak into it from a shell that talks to another cluster.
    out.pop("RAY_ADDRESS", None)
    return out


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def serve_status(dashboard_url: str, timeout: float = 5.0) -> dict[str, object] | None:
    """Ray's `GET /api/serve/applications/`, or None while the dashboard does not answer it."""
    try:
        with _opener().open(dashboard_url.rstrip("/") + "/api/serve/applications/", timeout=timeout) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def wait_until_ready(
    dashboard_url: str, *, timeout: float, is_alive: Callable[[], bool] = lambda: True, poll: float = 0.5
) -> float:
    """Wait until the Serve REST API answers; returns the seconds it took. Raises RuntimeError on timeout or when
    `is_alive()` turns false."""
    started = time.monotonic()
    while serve_status(dashboard_url, timeout=3) is None:
        if not is_alive():
            raise RuntimeError("ray start exited before its dashboard answered")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the Ray dashboard at {dashboard_url} did not answer within {timeout:.0f}s")
        time.sleep(poll)
    return time.monotonic() - started


def session_members(sid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(proc.pid) == sid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE  # a zombie whose parent is gone may never be reaped here
    except psutil.Error:
        return False


def _terminate(procs: list[psutil.Process], timeout: float) -> None:
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            continue
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop_session(sid: int, *, timeout: float = 30.0) -> list[str]:
    """Stop every process of session `sid` the way `ray stop` stops a node, but only this head: SIGTERM the
    raylet first (it takes its workers and their vLLM engines along), then the other Ray processes, then the GCS
    and `ray start` itself; SIGKILL whatever is left after `timeout` seconds in all. Returns what was killed."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(deadline - time.monotonic(), 0.5)

    members = session_members(sid)
    raylets = [p for p in members if _name(p) == "raylet"]
    last = [p for p in members if p.pid == sid or _name(p) == "gcs_server"]
    _terminate(raylets, min(left(), timeout / 2))
    others = [p for p in session_members(sid) if p.pid not in {q.pid for q in last}]
    _terminate(others, min(left(), timeout / 3))
    _terminate(session_members(sid), left())
    killed = []
    for proc in session_members(sid):
        try:
            described = f"{proc.pid} {_name(proc)}"
            proc.kill()
            killed.append(described)
        except psutil.Error:
            continue
    deadline = time.monotonic() + 5
    while session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return killed


def start_detached(
    head: RayHead, *, temp_dir: Path, log: Path, env: Mapping[str, str], cwd: Path, ray: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start the head in a new session with its output in `log` (tests and the benchmark; the launcher uses its
    supervisor instead)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            start_argv(head, temp_dir=temp_dir, ray=ray),
            env=start_env(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
