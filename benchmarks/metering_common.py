"""Shared by the metering benchmarks: Django on a throw-away test database, CPU clocks, a /metrics server process."""

from __future__ import annotations

import contextlib
import http.server
import multiprocessing
import multiprocessing.connection
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "apps" / "metering" / "tests" / "fixtures" / "vllm-0.32-after.prom"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()


@contextlib.contextmanager
def test_database() -> Iterator[None]:
    """A fresh, migrated `test_<name>` database for the run, dropped afterwards (as the test runner does)."""
    from django.test.utils import setup_databases, teardown_databases

    config = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        yield
    finally:
        teardown_databases(config, verbosity=0)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (and its finished, waited-for children are not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def db_backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def vllm_text(model: str, bump: int) -> str:
    """The real vLLM 0.32 /metrics page (50 KB), for `model`, with its counters moved on by `bump` requests."""
    text = FIXTURE.read_text().replace('model_name="tiny"', f'model_name="{model}"')

    def plus(amount: float):  # type: ignore[no-untyped-def]
        return lambda match: f"{match.group(1)} {float(match.group(2)) + amount}"

    tokens = r"^(vllm:(?:prompt|generation)_tokens_total\{[^}]*\}) (\S+)$"
    text = re.sub(tokens, plus(bump * 100), text, flags=re.M)
    finished = r'^(vllm:request_success_total\{[^}]*finished_reason="length"[^}]*\}) (\S+)$'
    return re.sub(finished, plus(bump), text, flags=re.M)


@dataclass
class ServerHandle:
    process: multiprocessing.process.BaseProcess
    port: int
    control: multiprocessing.connection.Connection

    def set_round(self, number: int) -> None:
        self.control.send(("round", number))
        self.control.recv()

    def hits(self) -> int:
        self.control.send(("hits", 0))
        return int(self.control.recv())

    def stop(self) -> None:
        self.control.send(("stop", 0))
        self.process.join(timeout=10)


def _serve(models: list[str], rounds: int, port_out: multiprocessing.connection.Connection) -> None:
    pages = {r: {f"/ep/{i}/metrics": vllm_text(m, r).encode() for i, m in enumerate(models)} for r in range(rounds)}
    state = {"round": 0, "hits": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = pages[state["round"]].get(self.path)
            with lock:
                state["hits"] += 1
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a scraper dropping its keep-alive connection at the end is not an error

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port_out.send(server.server_address[1])
    while True:
        command, value = port_out.recv()
        if command == "round":
            state["round"] = value
            port_out.send("ok")
        elif command == "hits":
            port_out.send(state["hits"])
        else:
            server.shutdown()
            return


def start_server(models: list[str], rounds: int) -> ServerHandle:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(models, rounds, child), daemon=True)
    process.start()
    port = parent.recv()
    return ServerHandle(process, port, parent)


def wait(seconds: float) -> None:
    time.sleep(seconds)
