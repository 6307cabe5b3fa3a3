"""Synthetic vLLM Prometheus text for metering tests, in the shape vLLM 0.32 and Ray 2.60 export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Real scrapes of vLLM 0.32 and a Ray 2.60 node (see fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures"

E2E_BOUNDS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0)
TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
ITL_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
QUEUE_BOUNDS = E2E_BOUNDS


@dataclass
class Replica:
    """Cumulative state of one synthetic vLLM engine."""

    model: str
    engine: str = "0"
    created: float = 1_700_000_000.0
    prompt: int = 0
    generation: int = 0
    success: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})
    e2e: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)
    running: float = 0.0
    waiting: float = 0.0
    kv: float = 0.0
    ray_replica: str | None = None  # set: export as Ray's ray_vllm_* with ReplicaId/WorkerId labels

    def serve(
        self, *, prompt: int, generation: int, reason: str = "length", e2e: float = 0.1, ttft: float = 0.01
    ) -> None:
        """Record one finished request."""
        self.prompt += prompt
        self.generation += generation
        self.success[reason] = self.success.get(reason, 0) + 1
        self.e2e.append(e2e)
        self.ttft.append(ttft)
        self.queue.append(0.001)
        self.itl.extend([0.02] * max(generation - 1, 0))

    def restart(self, at: float) -> None:
        self.created = at
        self.prompt = self.generation = 0
        self.success = dict.fromkeys(self.success, 0)
        self.e2e, self.ttft, self.itl, self.queue = [], [], [], []


def _labels(replica: Replica, extra: str = "") -> str:
    if replica.ray_replica:
        base = (
            f'Component="core_worker",NodeAddress="192.0.2.2",ReplicaId="{replica.ray_replica}",'
            f'WorkerId="w-{replica.ray_replica}",engine="{replica.engine}",model_name="{replica.model}"'
        )
    else:
        base = f'engine="{replica.engine}",model_name="{replica.model}"'
    return base + ("," + extra if extra else "")


def _histogram(prefix: str, name: str, replica: Replica, values: Sequence[float], bounds: Iterable[float]) -> list[str]:
    lines = [f"# HELP {prefix}{name} {name}", f"# TYPE {prefix}{name} histogram"]
    for bound in bounds:
        count = sum(1 for v in values if v <= bound)
        le = _labels(replica, f'le="{bound}"')
        lines.append(f"{prefix}{name}_bucket{{{le}}} {float(count)}")
    inf = _labels(replica, 'le="+Inf"')
    lines.append(f"{prefix}{name}_bucket{{{inf}}} {float(len(values))}")
    lines.append(f"{prefix}{name}_count{{{_labels(replica)}}} {float(len(values))}")
    lines.append(f"{prefix}{name}_sum{{{_labels(replica)}}} {float(sum(values))}")
    if not replica.ray_replica:
        lines.append(f"{prefix}{name}_created{{{_labels(replica)}}} {replica.created}")
    return lines


def exposition(replicas: Sequence[Replica], *, noise: bool = True) -> str:
    """A /metrics page with these replicas (Ray ones as ray_vllm_*), plus unrelated families around them."""
    lines: list[str] = []
    if noise:
        lines += [
            "# HELP python_gc_objects_collected_total Objects collected during gc",
            "# TYPE python_gc_objects_collected_total counter",
            'python_gc_objects_collected_total{generation="0"} 14974.0',
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total 7.71",
        ]
    for replica in replicas:
        prefix = "ray_vllm_" if replica.ray_replica else "vllm:"
        lines += [
            f"# TYPE {prefix}num_requests_running gauge",
            f"{prefix}num_requests_running{{{_labels(replica)}}} {replica.running}",
            f"# TYPE {prefix}num_requests_waiting gauge",
            f"{prefix}num_requests_waiting{{{_labels(replica)}}} {replica.waiting}",
            f"# TYPE {prefix}kv_cache_usage_perc gauge",
            f"{prefix}kv_cache_usage_perc{{{_labels(replica)}}} {replica.kv}",
            f"# TYPE {prefix}prompt_tokens_total counter",
            f"{prefix}prompt_tokens_total{{{_labels(replica)}}} {float(replica.prompt)}",
            f"# TYPE {prefix}generation_tokens_total counter",
            f"{prefix}generation_tokens_total{{{_labels(replica)}}} {float(replica.generation)}",
            f"# TYPE {prefix}request_success_total counter",
        ]
        for reason, count in replica.success.items():
            labels = _labels(replica, f'finished_reason="{reason}"')
            lines.append(f"{prefix}request_success_total{{{labels}}} {float(count)}")
        if not replica.ray_replica:
            lines += [
                f"# TYPE {prefix}prompt_tokens_created gauge",
                f"{prefix}prompt_tokens_created{{{_labels(replica)}}} {replica.created}",
            ]
        lines += _histogram(prefix, "e2e_request_latency_seconds", replica, replica.e2e, E2E_BOUNDS)
        lines += _histogram(prefix, "time_to_first_token_seconds", replica, replica.ttft, TTFT_BOUNDS)
        lines += _histogram(prefix, "inter_token_latency_seconds", replica, replica.itl, ITL_BOUNDS)
        lines += _histogram(prefix, "request_queue_time_seconds", replica, replica.queue, QUEUE_BOUNDS)
        if noise:
            inf = _labels(replica, 'le="+Inf"')
            lines += [
                f"# TYPE {prefix}request_prompt_tokens histogram",
                f"{prefix}request_prompt_tokens_bucket{{{inf}}} {float(len(replica.e2e))}",
            ]
    return "\n".join(lines) + "\n"


def at(minute: int, second: int = 0, *, day: int = 15, month: int = 10, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, second, tzinfo=dt.UTC)
