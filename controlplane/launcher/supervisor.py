"""Child processes that start in their own session and stop as a whole group.

Each child is the leader of a new session (so a Ctrl-C in the terminal reaches only the launcher, which then
stops the children in order), its output is copied line by line with its name in front, and stopping it sends
SIGTERM to its process group, waits, and kills whatever is left, including grandchildren such as gunicorn's and
Celery's pool processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(f"pareto: {message}", flush=True)


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie holds no resources; its parent just hasn't reaped it yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and alive(proc.pid):
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def stop_group(pgid: int, *, timeout: float, name: str) -> None:
    """SIGTERM the group, wait up to `timeout`, then SIGKILL what is left and wait for it to go."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_members(pgid):
        time.sleep(0.1)
    if group_members(pgid):
        say(f"{name} did not stop within {timeout:.0f}s; killing it")
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and group_members(pgid):
            time.sleep(0.1)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    stop_timeout: float
    pump: threading.Thread | None = None
    logfile: IO[bytes] | None = None
    stopped: bool = False
    # How to stop it instead of SIGTERM to its process group (the Ray head: its workers have groups of their own).
    stopper: Callable[[int], object] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Supervisor:
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        stop_timeout: float = 15.0,
        logfile: Path | None = None,
        stopper: Callable[[int], object] | None = None,
    ) -> Child:
        """Start a child. Its output goes to `logfile` if given, else to our stdout with `name |` in front."""
        log = logfile.open("ab") if logfile is not None else None
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(
            name=name, argv=list(argv), process=process, stop_timeout=stop_timeout, logfile=log, stopper=stopper
        )
        self.children.append(child)
        if log is None:
            child.pump = threading.Thread(target=self._pump, args=(child,), name=f"pump-{name}", daemon=True)
            child.pump.start()
        return child

    def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        prefix = f"{child.name:<7}| "
        for raw in iter(child.process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with _print_lock:
                self.out.write(prefix + line + "\n")
                self.out.flush()

    def exited(self) -> Child | None:
        """The first child that has exited although nobody asked it to, if any."""
        for child in self.children:
            if not child.stopped and child.process.poll() is not None:
                return child
        return None

    def pids(self) -> dict[str, int]:
        return {child.name: child.pid for child in self.children if not child.stopped}

    def stop(self, child: Child) -> None:
        if child.stopped:
            return
        child.stopped = True
        if child.stopper is not None:
            child.stopper(child.pid)
        else:
            stop_group(child.pid, timeout=child.stop_timeout, name=child.name)
        try:
            child.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - the group was killed above
            child.process.kill()
            child.process.wait()
        if child.pump is not None:
            child.pump.join(timeout=2)
        if child.logfile is not None:
            child.logfile.close()

    def stop_all(self) -> None:
        """Stop in reverse start order: the app processes first, the servers they use last."""
        for child in reversed(self.children):
            if not child.stopped:
                say(f"stopping {child.name} (pid {child.pid})")
            self.stop(child)
