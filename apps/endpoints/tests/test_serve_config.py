"""serve_application: the Ray Serve LLM application of one endpoint, on GPU and CPU-only clusters."""

from __future__ import annotations

import json

import pytest

from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints.models import Endpoint
from apps.endpoints.runtime.serve_config import serve_application
from apps.endpoints.tests.factories import EndpointFactory
from apps.inventory.tests.factories import ClusterFactory, GpuTypeFactory

SECRET = "hf_s3cr3t_value_for_tests"


@pytest.fixture
def gpu_cluster(db):
    return ClusterFactory(name="gpu-east")


@pytest.fixture
def cpu_cluster(db):
    return ClusterFactory(name="laptop", cpu_only=True)


def make(cluster, team=None, **kw):
    kw.setdefault("gpu_type", GpuTypeFactory(sku="H100-80GB", ray_accelerator_type="H100"))
    if "model" not in kw:
        kw["model"] = CatalogModel.objects.filter(name="llama-8b").first() or CatalogModelFactory(
            name="llama-8b", source="meta-llama/Llama-3.1-8B-Instruct"
        )
    if team is not None:
        kw["team"] = team
    return EndpointFactory(cluster=cluster, **kw)


def llm_config(app):
    (config,) = app["args"]["llm_configs"]
    return config


def test_gpu_cluster_sets_accelerator_type_and_tensor_parallel_size(gpu_cluster, team_a):
    ep = make(gpu_cluster, team_a, name="chat", gpus_per_replica=4, min_replicas=1, max_replicas=3, max_model_len=8192)
    app = serve_application(ep)
    assert app["name"] == f"pareto-{ep.pk}"
    assert app["route_prefix"] == "/team-a/chat"
    assert app["import_path"] == "ray.serve.llm:build_openai_app"
    config = llm_config(app)
    assert config["accelerator_type"] == "H100"
    assert config["engine_kwargs"] == {"max_model_len": 8192, "tensor_parallel_size": 4}
    assert config["model_loading_config"] == {
        "model_id": f"team-a-chat-{ep.pk}",
        "model_source": "meta-llama/Llama-3.1-8B-Instruct",
    }
    assert "deployment_config" not in config  # replica numbers are a deployment option (changed in place)
    assert app["deployments"] == [
        {"name": f"LLMServer:team-a-chat-{ep.pk}", "autoscaling_config": {"min_replicas": 1, "max_replicas": 3}}
    ]
    assert "placement_group_config" not in config
    assert "runtime_env" not in app  # nothing to set on a GPU cluster without secrets


def test_gpu_type_without_a_ray_accelerator_type_leaves_it_to_ray(gpu_cluster):
    ep = make(gpu_cluster, gpu_type=GpuTypeFactory(sku="L4-24GB", ray_accelerator_type=""))
    assert "accelerator_type" not in llm_config(serve_application(ep))


def test_cpu_cluster_gets_cpu_bundles_one_worker_and_a_kv_cache_budget(cpu_cluster, settings):
    settings.PARETO_CPU_KVCACHE_GIB = 3
    ep = make(cpu_cluster, gpus_per_replica=2)
    app = serve_application(ep)
    config = llm_config(app)
    assert config["placement_group_config"] == {"bundles": [{"CPU": 2}]}
    assert config["engine_kwargs"]["tensor_parallel_size"] == 1
    assert "accelerator_type" not in config
    assert app["runtime_env"] == {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "3"}}
    assert app["args"]["ingress_deployment_config"] == {"ray_actor_options": {"num_cpus": 0.1}}


def test_engine_args_reach_the_engine_next_to_the_endpoint_fields(gpu_cluster):
    ep = make(gpu_cluster, engine_args={"enable_prefix_caching": True, "gpu_memory_utilization": 0.85})
    assert llm_config(serve_application(ep))["engine_kwargs"] == {
        "max_model_len": 4096,
        "tensor_parallel_size": 1,
        "enable_prefix_caching": True,
        "gpu_memory_utilization": 0.85,
    }


def test_model_id_and_app_name_are_unique_per_endpoint_even_for_a_reused_name(gpu_cluster, team_a, team_b):
    old = make(gpu_cluster, team_a, name="chat", state=Endpoint.State.DELETED)
    new = make(gpu_cluster, team_a, name="chat")
    other_team = make(gpu_cluster, team_b, name="chat")
    apps = [serve_application(e) for e in (old, new, other_team)]
    assert len({a["name"] for a in apps}) == 3
    assert len({llm_config(a)["model_loading_config"]["model_id"] for a in apps}) == 3
    assert [a["route_prefix"] for a in apps] == ["/team-a/chat", "/team-a/chat", "/team-b/chat"]


def test_the_config_is_plain_json(gpu_cluster):
    app = serve_application(make(gpu_cluster))
    assert json.loads(json.dumps(app)) == app


def test_no_secret_unless_its_environment_variable_is_set(db, monkeypatch):
    cluster = ClusterFactory(secret_env={"hf_token": "PARETO_TEST_HF_TOKEN"})
    monkeypatch.delenv("PARETO_TEST_HF_TOKEN", raising=False)
    app = serve_application(make(cluster))
    assert "HF_TOKEN" not in json.dumps(app)
    assert "runtime_env" not in app

    monkeypatch.setenv("PARETO_TEST_HF_TOKEN", "")
    assert "HF_TOKEN" not in json.dumps(serve_application(make(cluster)))

    monkeypatch.setenv("PARETO_TEST_HF_TOKEN", SECRET)
    assert serve_application(make(cluster))["runtime_env"] == {"env_vars": {"HF_TOKEN": SECRET}}


def test_a_cluster_without_secret_names_never_sends_one(gpu_cluster, monkeypatch):
    monkeypatch.setenv("PARETO_TEST_HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert SECRET not in json.dumps(serve_application(make(gpu_cluster)))


def test_cpu_cluster_keeps_both_the_kv_cache_budget_and_the_secret(db, monkeypatch, settings):
    settings.PARETO_CPU_KVCACHE_GIB = 1
    cluster = ClusterFactory(cpu_only=True, secret_env={"hf_token": "PARETO_TEST_HF_TOKEN"})
    monkeypatch.setenv("PARETO_TEST_HF_TOKEN", SECRET)
    assert serve_application(make(cluster))["runtime_env"] == {
        "env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_TOKEN": SECRET}
    }
