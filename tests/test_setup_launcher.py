"""`./pareto up` with embedded PostgreSQL and Redis: it serves, it stops everything it started, and it fails loudly.

These start the real launcher in a temporary var/ directory on a free port, as a person would run it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - our own 127.0.0.1 URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


class Launcher:
    def __init__(self, var: Path, log: Path) -> None:
        self.var, self.log, self.port = var, log, free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PARETO_SECRET_KEY")}
        env.update(PARETO_VAR_DIR=str(var), PARETO_PORT=str(self.port), PARETO_WEB_WORKERS="1")
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(ROOT / "pareto"), "up"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.base = f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while status(self.base + "healthz") != 200:
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.5)
        while "Pareto is up" not in self.output():  # the banner follows the first healthy answer
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def started_pids(self) -> set[int]:
        """Everything this launcher runs: its descendants and the PostgreSQL server (which pg_ctl detaches)."""
        pids = {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}
        state = json.loads((self.var / "run" / "launcher.json").read_text())
        pids |= set(state["children"].values())
        postmaster = int((self.var / "postgres" / "postmaster.pid").read_text().splitlines()[0])
        pids.add(postmaster)
        pids |= {p.pid for p in psutil.Process(postmaster).children(recursive=True)}
        return pids

    def wait(self, timeout: float = 90) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def running(pids: set[int]) -> list[str]:
    left = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {' '.join(proc.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    return left


def processes_mentioning(path: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(path) in " ".join(proc.info["cmdline"] or []):
            found.append(f"{proc.info['pid']} {' '.join(proc.info['cmdline'])}")
    return found


@pytest.fixture
def var(tmp_path: Path):
    var = tmp_path / "var"
    yield var
    # Whatever a failing test left behind must not outlive it.
    for line in processes_mentioning(var):
        pid = int(line.split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_up_serves_then_sigint_stops_everything_and_a_second_start_keeps_the_data(var, tmp_path):
    first = Launcher(var, tmp_path / "first.log")
    first.wait_until_up()
    assert status(first.base + "login/") == 200
    assert status(first.base + "static/css/pareto.css") == 200  # collected and served by whitenoise
    logins = json.loads((var / "demo_logins.json").read_text())
    assert {entry["username"] for entry in logins} >= {"admin", "finance"}
    for entry in logins:
        assert entry["password"] in first.output()
    assert (var / "secret_key").stat().st_mode & 0o077 == 0
    pids = first.started_pids()
    assert len(pids) >= 6  # postgres, redis, gunicorn and its worker, celery worker, beat

    first.process.send_signal(signal.SIGINT)

    assert first.wait() == 0, first.output()
    assert running(pids) == [], first.output()
    assert processes_mentioning(var) == []
    assert status(first.base + "healthz") is None

    second = Launcher(var, tmp_path / "second.log")
    second.wait_until_up()
    assert "Demo data: already present" in second.output()
    assert json.loads((var / "demo_logins.json").read_text()) == logins
    second_pids = second.started_pids()

    second.process.send_signal(signal.SIGTERM)

    assert second.wait() == 0, second.output()
    assert running(second_pids) == []


def test_a_child_that_dies_is_reported_and_everything_stops_with_an_error(var, tmp_path):
    launcher = Launcher(var, tmp_path / "launcher.log")
    launcher.wait_until_up()
    pids = launcher.started_pids()
    worker_pid = json.loads((var / "run" / "launcher.json").read_text())["children"]["worker"]

    os.kill(worker_pid, signal.SIGKILL)

    assert launcher.wait() == 1
    assert f"worker (pid {worker_pid}) exited with code -9; stopping everything" in launcher.output()
    assert running(pids) == [], launcher.output()
    assert processes_mentioning(var) == []
