"""Against a real vLLM server (the tiny model, on CPU): metered tokens equal exactly what the responses' usage said,
and the p50/p95 of end-to-end latency fall in the histogram bucket holding the client-measured value.

The server is started for this module only (one vLLM at a time; 50-160 s to start on a loaded 2-core machine) and
stopped in teardown with its whole process group. Without the serving runtime (scripts/install-runtime) the test is
skipped, except in CI, where it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.metering.histograms import bucket_containing
from apps.metering.ingest import scrape_cluster
from apps.metering.models import HistogramLayout, UsageMinute
from apps.metering.rollup import local_day, rollup
from apps.metering.selectors import endpoint_usage, layouts_for, percentile

from .factories import metered_endpoint

ROOT = Path(__file__).resolve().parents[3]
STARTUP_SECONDS = 420


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a local test server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [name for name in ("vllm", "torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        message = f"the serving runtime is not installed ({', '.join(missing)}): run scripts/install-runtime"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("tiny-model")
    code = "import sys; from apps.catalog.tinymodel import build_tiny_model; build_tiny_model(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, check=True, timeout=300)
    return out


class VllmServer:
    def __init__(self, model: Path, name: str, log: Path) -> None:
        self.port = _free_port()
        self.name = name
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(model),
                "--served-model-name",
                name,
                "--max-model-len",
                "1024",
                "--dtype",
                "bfloat16",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: EngineCore and the worker stop with it
        )

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < STARTUP_SECONDS:
            if self.process.poll() is not None:
                raise AssertionError(f"vLLM exited with {self.process.returncode}:\n{self.tail()}")
            if _get(f"{self.base}/health")[0] == 200:
                return time.monotonic() - started
            time.sleep(2)
        raise AssertionError(f"vLLM not ready after {STARTUP_SECONDS} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log_file.close()

    def chat(self, content: str, max_tokens: int) -> dict[str, Any]:
        body = json.dumps(
            {"model": self.name, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
        ).encode()
        request = urllib.request.Request(  # noqa: S310
            f"{self.base}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            answer = json.loads(response.read())
        answer["client_seconds"] = time.perf_counter() - started
        return answer


@pytest.fixture
def server(tiny_model: Path, team_a, tmp_path: Path) -> Iterator[tuple[VllmServer, Any]]:
    endpoint = metered_endpoint(team=team_a, name="tiny", metrics_urls="placeholder")
    vllm = VllmServer(tiny_model, endpoint.served_model_id, tmp_path / "vllm.log")
    try:
        vllm.wait_ready()
        endpoint.cluster.metrics_urls = f"{vllm.base}/metrics"
        endpoint.cluster.save()
        yield vllm, endpoint
    finally:
        vllm.stop()


PROMPTS = [
    ("Hello! How are you today?", 8),
    ("Write a short poem about the sea and the wind.", 24),
    ("List three prime numbers.", 1),
    ("Explain what a KV cache is in one paragraph, please, with an example of its size.", 32),
    ("Hi", 16),
    ("What is the capital of France? Answer in one word.", 4),
    ("Count from one to ten in words, separated by commas, and then back down again.", 48),
    ("Tell me a joke about GPUs.", 12),
    ("Summarise the theory of relativity for a child.", 20),
    ("ok", 2),
    ("Describe the colour blue to someone who has never seen it, in detail.", 40),
    ("Why is the sky blue?", 10),
]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.django_db
def test_metered_tokens_and_latency_match_what_clients_saw(server):
    vllm, endpoint = server
    assert scrape_cluster(cluster_id=endpoint.cluster_id).failed == []  # baseline: counters as they are now
    answers = [vllm.chat(content, max_tokens) for content, max_tokens in PROMPTS]
    prompt = sum(a["usage"]["prompt_tokens"] for a in answers)
    completion = sum(a["usage"]["completion_tokens"] for a in answers)
    reasons: dict[str, int] = {}
    for answer in answers:
        reason = answer["choices"][0]["finish_reason"]
        reasons[reason] = reasons.get(reason, 0) + 1
    # The server records a request's metrics as it finishes; give a slow machine a moment, scraping as Pareto does.
    deadline = time.monotonic() + 30
    while True:
        time.sleep(1)
        assert scrape_cluster(cluster_id=endpoint.cluster_id).failed == []
        rows = UsageMinute.objects.filter(endpoint=endpoint)
        if sum(r.requests for r in rows) >= len(PROMPTS) or time.monotonic() > deadline:
            break
    rows = list(UsageMinute.objects.filter(endpoint=endpoint))
    assert sum(r.prompt_tokens for r in rows) == prompt
    assert sum(r.generation_tokens for r in rows) == completion
    assert sum(r.requests for r in rows) == len(PROMPTS)
    booked: dict[str, int] = {}
    for row in rows:
        for reason, count in row.requests_by_reason.items():
            booked[reason] = booked.get(reason, 0) + count
    assert booked == reasons

    rollup()
    (usage,) = endpoint_usage(
        team_ids=[endpoint.team_id], start_day=local_day(rows[0].minute), end_day=local_day(rows[-1].minute)
    )
    assert (usage.prompt_tokens, usage.generation_tokens) == (prompt, completion)
    layouts = layouts_for([usage.histograms])
    (part,) = usage.histograms["e2e"]
    bounds = HistogramLayout.objects.get(pk=part["l"]).bounds
    client = sorted(a["client_seconds"] for a in answers)
    for q in (0.5, 0.95):
        # The client's value at the same rank (nearest rank), and the bucket that holds it.
        client_value = client[max(int(-(-q * len(client) // 1)) - 1, 0)]
        low, high = bucket_containing(client_value, bounds)
        metered = percentile(usage.histograms, "e2e", q, layouts)
        assert metered is not None
        assert low <= metered <= high, (q, metered, client_value, (low, high))
        print(f"p{q * 100:.0f}: metered {metered:.4f} s, client {client_value:.4f} s, bucket ({low}, {high}]")
    print(f"{len(PROMPTS)} requests: {prompt} prompt + {completion} completion tokens metered exactly; {booked}")
