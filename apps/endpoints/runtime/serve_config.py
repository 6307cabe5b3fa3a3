"""The Ray Serve application of one endpoint: the one function both the Ray runtime and KubeRay use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from apps.endpoints.models import Endpoint


# `build_openai_app` names the engine's deployment "LLMServer:<model id>" (and the HTTP side "OpenAiIngress").
LLM_DEPLOYMENT_PREFIX = "LLMServer:"


def serve_application(endpoint: Endpoint) -> dict[str, Any]:
    """A `build_openai_app` application serving the endpoint's model under its own model id and route."""
    cluster = endpoint.cluster
    engine_kwargs: dict[str, Any] = {
        "max_model_len": endpoint.max_model_len,
        "tensor_parallel_size": endpoint.gpus_per_replica,
        **endpoint.engine_args,
    }
    llm_config: dict[str, Any] = {
        "model_loading_config": {"model_id": endpoint.served_model_id, "model_source": endpoint.model.source},
        "engine_kwargs": engine_kwargs,
    }
    runtime_env: dict[str, Any] = {"env_vars": {}}
    if cluster.cpu_only:
        # On CPU a "GPU" of the endpoint is one CPU: vLLM runs one worker and needs a KV-cache budget in GiB.
        engine_kwargs["tensor_parallel_size"] = 1
        llm_config["placement_group_config"] = {"bundles": [{"CPU": endpoint.gpus_per_replica}]}
        runtime_env["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] = str(settings.PARETO_CPU_KVCACHE_GIB)
    else:
        if endpoint.gpu_type.ray_accelerator_type:
            llm_config["accelerator_type"] = endpoint.gpu_type.ray_accelerator_type
    hf_token_env = (cluster.secret_env or {}).get("hf_token")
    if hf_token_env:
        # The value is read from the worker's environment when the config is built, never stored.
        import os

        token = os.environ.get(hf_token_env, "")
        if token:
            runtime_env["env_vars"]["HF_TOKEN"] = token
    app: dict[str, Any] = {
        "name": endpoint.app_name,
        "route_prefix": endpoint.route_prefix,
        "import_path": "ray.serve.llm:build_openai_app",
        "args": {
            "llm_configs": [llm_config],
            "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0.1}},
        },
        # The replica range is a Serve deployment option, not an argument of the application: Serve applies a
        # change of it in place (seen on Ray 2.60: 0.4 s, same replica), whereas any change to `args` rebuilds the
        # application and restarts every vLLM replica (113 s on the CPU test machine, with no replica serving).
        "deployments": [
            {
                "name": f"{LLM_DEPLOYMENT_PREFIX}{endpoint.served_model_id}",
                "autoscaling_config": {"min_replicas": endpoint.min_replicas, "max_replicas": endpoint.max_replicas},
            }
        ],
    }
    if runtime_env["env_vars"]:
        app["runtime_env"] = runtime_env
    return app
