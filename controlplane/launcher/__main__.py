"""`python -m controlplane.launcher up|test [pytest args]`; the `./pareto` script runs this inside the venv."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO

from .embedded import (
    EmbeddedPostgres,
    LaunchError,
    plan_redis,
    port_in_use,
    redact,
    secret_key,
    start_postgres,
    stop_postgres,
    wait_for_redis,
)
from .rayhead import RayHead, start_argv, start_env, stop_session, temp_dir_for, wait_until_ready
from .supervisor import Child, Supervisor, alive, say, stop_group

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DATABASE = "pareto"
HEALTH_TIMEOUT = 90.0
RAY_TIMEOUT = 150.0  # `ray start` took 8-14 s on an idle 2-core machine, several times that under load
TINY_MODEL = Path("models") / "tiny-llama"  # under var/, where `manage.py build_tiny_model` puts it


def var_dir() -> Path:
    return Path(os.environ.get("PARETO_VAR_DIR") or ROOT / "var").resolve()


class Stop(Exception):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived."""


class Signals:
    """First signal raises Stop in the main thread; later ones are ignored while we are already stopping."""

    def __init__(self) -> None:
        self.stopping = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise LaunchError(f"{what} is already running from {lock_path.parent} (pid {holder}).") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- what runs -----------------------------------------------------------------------------------------


def web_argv(port: int) -> list[str]:
    return [
        PYTHON, "-m", "gunicorn", "controlplane.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", os.environ.get("PARETO_WEB_WORKERS", "2"),
        "--graceful-timeout", "10",
        "--access-logfile", "-",
    ]  # fmt: skip


def worker_argv() -> list[str]:
    return [
        PYTHON, "-m", "celery", "-A", "controlplane", "worker",
        "--loglevel", "INFO",
        "--concurrency", os.environ.get("PARETO_WORKER_CONCURRENCY", "2"),
        "--hostname", "pareto-local@%h",
    ]  # fmt: skip


def beat_argv(var: Path) -> list[str]:
    return [
        PYTHON, "-m", "celery", "-A", "controlplane", "beat",
        "--loglevel", "INFO",
        "--schedule", str(var / "celerybeat-schedule"),
    ]  # fmt: skip


# --- leftovers of a launcher that was killed -------------------------------------------------------------


def _state_path(var: Path) -> Path:
    return var / "run" / "launcher.json"


def write_state(var: Path, supervisor: Supervisor, pg: EmbeddedPostgres | None) -> None:
    path = _state_path(var)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"launcher": os.getpid(), "children": supervisor.pids(), "postgres": pg.pid if pg else None}
    path.write_text(json.dumps(state, indent=2) + "\n")


def reap_leftovers(var: Path) -> None:
    """A launcher killed with SIGKILL can't stop its children; the next one does, before starting anything."""
    path = _state_path(var)
    if not path.exists():
        return
    try:
        state = json.loads(path.read_text())
    except ValueError:
        state = {}
    for name, pid in (state.get("children") or {}).items():
        try:
            leader = alive(pid) and os.getpgid(pid) == pid
        except ProcessLookupError:
            continue
        # The pid may have been reused since: only a group leader that still runs our code is ours.
        if leader and _runs_from(pid, (ROOT, var)):
            say(f"stopping {name} (pid {pid}) left over from an earlier run")
            if name == "ray":
                stop_session(pid, timeout=20)
            else:
                stop_group(pid, timeout=10, name=name)
    path.unlink(missing_ok=True)


def _runs_from(pid: int, paths: tuple[Path, ...]) -> bool:
    """The process names one of `paths` on its command line or works in one (redis-server chdirs to its data)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        places = [*proc.cmdline(), proc.cwd()]
    except psutil.Error:
        return False
    return any(str(path) in place for path in paths for place in places)


# --- HTTP probes ---------------------------------------------------------------------------------------


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own 127.0.0.1 URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def readyz(base: str) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(base + "readyz", timeout=3) as response:  # noqa: S310 - our own URL
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return None, str(exc)


# --- ./pareto up -----------------------------------------------------------------------------------------


def print_banner(base: str, logins_file: Path, started: float, out: IO[str], ray: RayHead | None = None) -> None:
    lines = ["", "=" * 78, f"  Pareto is up: {base}   (started in {time.time() - started:.1f}s)", ""]
    if ray is not None:
        lines += [
            f'  Local Ray cluster "local-ray": dashboard {ray.dashboard_url}',
            f"    endpoints answer at {ray.serve_url}/<team>/<endpoint>/v1 (OpenAI API); demo model: tiny-llama",
            "",
        ]
    else:
        lines += ["  No local Ray (PARETO_RAY=false): endpoints need a cluster you add yourself.", ""]
    try:
        logins = json.loads(logins_file.read_text())
    except (FileNotFoundError, ValueError):
        logins = []
    if logins:
        lines.append("  Demo logins (local accounts made by `manage.py seed_demo`; for trying Pareto out only):")
        width = max(len(entry["username"]) for entry in logins)
        for entry in logins:
            password = entry.get("password") or "(set earlier, not known here)"
            lines.append(f"    {entry['username']:<{width}}  {password:<24}  {entry['role']}")
        lines.append(f"  (also in {logins_file})")
    what = "web, worker, beat, " + ("Ray, " if ray is not None else "") + "Redis and PostgreSQL"
    lines += ["", f"  Ctrl-C stops {what}.", "=" * 78, ""]
    out.write("\n".join(lines) + "\n")
    out.flush()


def up() -> int:
    started = float(os.environ.get("PARETO_BOOTSTRAP_STARTED") or time.time())
    var = var_dir()
    var.mkdir(parents=True, exist_ok=True)
    signals = Signals()
    try:
        with exclusive(var / "launcher.lock", "Pareto"):
            return _up(var, signals, started)
    except LaunchError as exc:
        say(str(exc))
        return 1


def _up(var: Path, signals: Signals, started: float) -> int:
    env = dict(os.environ)
    env.pop("PARETO_BOOTSTRAP_STARTED", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PARETO_VAR_DIR"] = str(var)  # so that every child agrees where the demo model lives
    env.setdefault("PARETO_HTTPS", "false")
    env.setdefault("PARETO_STATIC_ROOT", str(var / "staticfiles"))
    if not env.get("PARETO_SECRET_KEY"):
        env["PARETO_SECRET_KEY"] = secret_key(var)
    port = int(env.get("PARETO_PORT") or 8000)
    reap_leftovers(var)  # before the port check: a leftover web server may hold the port
    if port_in_use(port):
        raise LaunchError(f"Port {port} on 127.0.0.1 is in use; stop what uses it or set PARETO_PORT.")
    ray = local_ray(env, web_port=port)
    embedded_db = not env.get("DATABASE_URL")
    embedded_redis = not env.get("REDIS_URL")
    logins_file = var / "demo_logins.json"
    supervisor = Supervisor()
    pg: EmbeddedPostgres | None = None
    signals.install()
    rc = 1
    try:
        if embedded_db:
            step = time.monotonic()
            say(f"starting PostgreSQL (embedded, data in {var / 'postgres'}) ...")
            pg = start_postgres(var / "postgres", DATABASE)
            env["DATABASE_URL"] = pg.url(DATABASE)
            say(f"PostgreSQL is up ({time.monotonic() - step:.1f}s)")
        if embedded_redis:
            step = time.monotonic()
            say(f"starting Redis (embedded, data in {var / 'redis'}) ...")
            plan = plan_redis(var / "redis", persist=True)
            redis_child = supervisor.start("redis", plan.argv, env=env, cwd=ROOT, stop_timeout=10)
            wait_for_redis(plan.url, timeout=15, is_alive=lambda: redis_child.process.poll() is None)
            env["REDIS_URL"] = plan.url
            say(f"Redis is up ({time.monotonic() - step:.1f}s)")
        write_state(var, supervisor, pg)
        say(f"database {redact(env['DATABASE_URL'])}, redis {redact(env['REDIS_URL'])}")
        ray_child = None
        if ray is not None:
            install_runtime(env)
            ray_child = start_ray(supervisor, ray, var, env)
            write_state(var, supervisor, pg)

        step = time.monotonic()
        say("migrating, collecting static files and loading the demo data ...")
        prepare = [PYTHON, str(ROOT / "manage.py"), "setup_local", "--logins-file", str(logins_file)]
        if env.get("PARETO_SEED_DEMO", "true").lower() in ("0", "false", "no"):
            prepare.append("--no-demo")
        if subprocess.run(prepare, env=env, cwd=ROOT, start_new_session=True, check=False).returncode != 0:
            raise LaunchError("Preparing the database failed; see the output above.")
        say(f"prepared ({time.monotonic() - step:.1f}s)")
        if ray is not None:
            build_tiny_model(var, env)

        # Stopped in reverse: web first (no new requests), then beat, then the worker finishes its tasks.
        supervisor.start("worker", worker_argv(), env=env, cwd=ROOT, stop_timeout=20)
        supervisor.start("beat", beat_argv(var), env=env, cwd=ROOT, stop_timeout=10)
        supervisor.start("web", web_argv(port), env=env, cwd=ROOT, stop_timeout=15)
        write_state(var, supervisor, pg)

        base = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while http_status(base + "healthz") != 200:
            _check_children(supervisor, pg)
            if time.monotonic() > deadline:
                raise LaunchError(f"The web server did not answer {base}healthz within {HEALTH_TIMEOUT:.0f}s.")
            time.sleep(0.3)
        if ray is not None and ray_child is not None:
            step = time.monotonic()
            ray_process = ray_child.process
            try:
                wait_until_ready(ray.dashboard_url, timeout=RAY_TIMEOUT, is_alive=lambda: ray_process.poll() is None)
            except RuntimeError as exc:
                raise LaunchError(f"The local Ray head did not come up: {exc}; see its output above.") from exc
            say(f"Ray is up: dashboard {ray.dashboard_url} (waited {time.monotonic() - step:.1f}s more)")
        print_banner(base, logins_file, started, sys.stdout, ray)
        rc = _supervise(supervisor, pg, base, env["REDIS_URL"])
    except Stop as stop:
        say(f"{stop} received: stopping everything")
        rc = 0
    except LaunchError as exc:
        say(str(exc))
        rc = 1
    finally:
        signals.stopping = True
        supervisor.stop_all()
        if embedded_db:
            say("stopping PostgreSQL")
            stop_postgres(var / "postgres")
        _state_path(var).unlink(missing_ok=True)
        say("stopped" if rc == 0 else f"stopped (exit {rc})")
    return rc


def local_ray(env: dict[str, str], *, web_port: int) -> RayHead | None:
    """The local Ray head to start, or None with PARETO_RAY=false. Its ports must be free now."""
    if env.get("PARETO_RAY", "true").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        head = RayHead.local(env)
    except ValueError as exc:
        raise LaunchError(str(exc)) from exc
    for name, ray_port in head.listening_ports().items():
        variable = {
            "Ray GCS": "PARETO_RAY_GCS_PORT",
            "Ray dashboard": "PARETO_RAY_DASHBOARD_PORT",
            "Ray Serve HTTP": "PARETO_RAY_SERVE_PORT",
            "Ray metrics export": "PARETO_RAY_METRICS_PORT",
        }[name]
        if ray_port == web_port or port_in_use(ray_port):
            raise LaunchError(
                f"Port {ray_port} ({name}) on 127.0.0.1 is in use (another Ray, or another ./pareto up?). "
                f"Set {variable} to a free port, or PARETO_RAY=false to start without a local Ray."
            )
    return head


def install_runtime(env: dict[str, str]) -> None:
    """vLLM for CPU and Ray Serve in this venv: about 3 minutes and 1.1 GB of wheels the first time, then a
    check that takes a second (scripts/install-runtime is idempotent)."""
    step = time.monotonic()
    say("checking the serving runtime (vLLM for CPU, Ray Serve); the first start installs it: ~1.1 GB, ~3 min")
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-runtime"), sys.prefix], env=env, cwd=ROOT, start_new_session=True, check=False
    )
    if done.returncode != 0:
        raise LaunchError(
            "Installing the serving runtime failed (output above; see docs/runtime.md). "
            "PARETO_RAY=false starts Pareto without it."
        )
    say(f"serving runtime ready ({time.monotonic() - step:.1f}s)")


def start_ray(supervisor: Supervisor, head: RayHead, var: Path, env: dict[str, str]) -> Child:
    """`ray start --head --block` as a supervised child; stopped session-wide, raylet first (rayhead.py)."""
    temp = temp_dir_for(var)
    # Sessions of earlier runs are dead (we hold var/'s lock and reaped leftovers): keep only their space.
    if temp.is_dir():
        for old in temp.glob("session_*"):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    say(f"starting Ray (head on 127.0.0.1, dashboard {head.dashboard_url}, temp dir {temp}) ...")
    return supervisor.start(
        "ray",
        start_argv(head, temp_dir=temp, ray=Path(PYTHON).parent / "ray"),
        env=start_env(env),
        cwd=ROOT,
        stop_timeout=30,
        stopper=lambda pid: _stop_ray(pid, temp, var),
    )


def _stop_ray(pid: int, temp: Path, var: Path) -> None:
    stop_session(pid, timeout=30)
    if not temp.is_relative_to(var):  # the short /tmp stand-in for a long var/ path: nothing in it outlives Ray
        shutil.rmtree(temp, ignore_errors=True)


def build_tiny_model(var: Path, env: dict[str, str]) -> None:
    """The demo model, built once (offline, deterministic; 10-20 s) and put in the catalog."""
    if (var / TINY_MODEL / "config.json").is_file():
        return
    step = time.monotonic()
    say(f"building the tiny demo model into {var / TINY_MODEL} (once) ...")
    argv = [PYTHON, str(ROOT / "manage.py"), "build_tiny_model", "--register"]
    if subprocess.run(argv, env=env, cwd=ROOT, start_new_session=True, check=False).returncode != 0:
        raise LaunchError("Building the tiny demo model failed; see the output above.")
    say(f"tiny model built ({time.monotonic() - step:.1f}s)")


class ChildDied(LaunchError):
    pass


def _check_children(supervisor: Supervisor, pg: EmbeddedPostgres | None) -> None:
    dead = supervisor.exited()
    if dead is not None:
        code = dead.process.returncode
        raise ChildDied(f"{dead.name} (pid {dead.pid}) exited with code {code}; stopping everything.")
    if pg is not None and not pg.is_running():
        raise ChildDied(f"PostgreSQL (pid {pg.pid}) stopped unexpectedly; see {pg.data_dir / 'log'}.")


def _heartbeat(redis_url: str) -> float | None:
    """The worker's last heartbeat time, read from Redis (probing /readyz until it passes would flood the log)."""
    import redis

    from apps.core.health import HEARTBEAT_KEY

    try:
        with redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
            raw = client.get(HEARTBEAT_KEY)
    except redis.RedisError:
        return None
    return float(raw) if raw is not None else None


def _supervise(supervisor: Supervisor, pg: EmbeddedPostgres | None, base: str, redis_url: str) -> int:
    """Watch the children until one dies (exit 1) or a signal arrives (Stop). Say once when /readyz passes."""
    since = time.time()
    ready_reported = False
    next_probe = 0.0
    while True:
        _check_children(supervisor, pg)
        now = time.monotonic()
        if not ready_reported and now >= next_probe:
            next_probe = now + 1
            beat = _heartbeat(redis_url)
            if beat is not None and beat >= since:
                status, body = readyz(base)
                if status == 200:
                    say("ready: /readyz reports the database, Redis and a fresh worker heartbeat")
                else:
                    say(f"/readyz answered {status} after the first heartbeat: {body}")
                ready_reported = True
        time.sleep(0.3)


# --- ./pareto test ---------------------------------------------------------------------------------------


def test(pytest_args: list[str]) -> int:
    var = var_dir()
    var.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(var / "test.lock", "./pareto test"):
            return _test(var, pytest_args)
    except LaunchError as exc:
        say(str(exc))
        return 1


def _test(var: Path, pytest_args: list[str]) -> int:
    env = dict(os.environ)
    env.pop("PARETO_BOOTSTRAP_STARTED", None)
    env.setdefault("PARETO_HTTPS", "false")
    if not env.get("PARETO_SECRET_KEY"):
        env["PARETO_SECRET_KEY"] = "test-" + secrets.token_urlsafe(32)
    embedded_db = not env.get("DATABASE_URL")
    supervisor = Supervisor()
    pytest: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        # pytest shares our terminal, so it sees a Ctrl-C itself; forward what is sent to us alone.
        if pytest is not None and pytest.poll() is None and signum != signal.SIGINT:
            pytest.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        if embedded_db:
            say(f"starting PostgreSQL for the tests (embedded, {var / 'test-postgres'}) ...")
            pg = start_postgres(var / "test-postgres", DATABASE)
            env["DATABASE_URL"] = pg.url(DATABASE)
        if not env.get("REDIS_URL"):
            say(f"starting Redis for the tests (embedded, {var / 'test-redis'}) ...")
            plan = plan_redis(var / "test-redis", persist=False)
            redis_child = supervisor.start(
                "redis", plan.argv, env=env, cwd=ROOT, stop_timeout=10, logfile=var / "test-redis" / "redis.log"
            )
            wait_for_redis(plan.url, timeout=15, is_alive=lambda: redis_child.process.poll() is None)
            env["REDIS_URL"] = plan.url
        say(f"pytest against {redact(env['DATABASE_URL'])} and {redact(env['REDIS_URL'])}")
        pytest = subprocess.Popen([PYTHON, "-m", "pytest", *pytest_args], env=env, cwd=ROOT)
        return pytest.wait()
    finally:
        if pytest is not None and pytest.poll() is None:
            pytest.kill()
            pytest.wait()
        supervisor.stop_all()
        if embedded_db:
            stop_postgres(var / "test-postgres")


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"] and len(argv) == 1:
        return up()
    if argv[:1] == ["test"]:
        return test(argv[1:])
    print("usage: ./pareto up | ./pareto test [pytest args]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
