"""Parsing real vLLM and Ray scrapes with prometheus_client's parser, grouped by model and replica."""

from __future__ import annotations

import json

from apps.metering.scrape import filter_text, parse_text, prometheus_selector

from .helpers import FIXTURES, Replica, exposition


def test_vllm_counters_match_what_the_clients_saw():
    usage = json.loads((FIXTURES / "vllm-0.32-usage.json").read_text())
    samples = parse_text((FIXTURES / "vllm-0.32-after.prom").read_text(), source="http://a/metrics")
    (replica,) = samples["tiny"].values()
    assert replica.counters["p"] == usage["totals"]["prompt_tokens"] == 2013
    assert replica.counters["g"] == usage["totals"]["completion_tokens"] == 698
    reasons = {}
    for request in usage["requests"]:
        reasons[request["finish_reason"]] = reasons.get(request["finish_reason"], 0) + 1
    assert {k[2:]: v for k, v in replica.counters.items() if k.startswith("r:") and v} == reasons
    assert replica.counters["hc:e2e"] == 24
    assert replica.counters["h:e2e:inf"] == 24
    assert replica.counters["h:ttft:0.001"] <= replica.counters["h:ttft:0.1"]
    assert replica.created is not None
    assert replica.gauges == {"running": 0.0, "waiting": 0.0, "kv": 0.0}


def test_ray_node_scrape_keeps_only_the_vllm_series_by_replica():
    text = (FIXTURES / "ray-2.60-serve-llm-node.prom").read_text()
    samples = parse_text(text, source="http://node:8080/metrics")
    assert set(samples) == {"tiny"}
    (key,) = samples["tiny"]
    assert "ReplicaId=uzmo20rz" in key and key.startswith("http://node:8080/metrics|")
    replica = samples["tiny"][key]
    assert replica.counters["p"] == 61
    assert replica.counters["g"] == 98
    assert replica.counters["r:length"] + replica.counters["r:stop"] == 6
    # Of ~2,600 lines only the few hundred vLLM samples Pareto uses reach the parser.
    assert filter_text(text).count("\n") < 150


def test_two_engines_and_two_models_are_told_apart():
    a0, a1, b = Replica("a", engine="0"), Replica("a", engine="1"), Replica("b")
    a0.serve(prompt=5, generation=1)
    a1.serve(prompt=7, generation=2)
    b.serve(prompt=11, generation=3)
    samples = parse_text(exposition([a0, a1, b]), source="u")
    assert sorted(r.counters["p"] for r in samples["a"].values()) == [5, 7]
    assert [r.counters["p"] for r in samples["b"].values()] == [11]


def test_prometheus_selector_names_the_series_and_models():
    query = prometheus_selector(["team-a-chat-3", "team-b-x-9"])
    assert query.startswith('{__name__=~"')
    assert "vllm:e2e_request_latency_seconds_bucket" in query and "ray_vllm_prompt_tokens_total" in query
    assert 'model_name=~"team-a-chat-3|team-b-x-9"' in query
