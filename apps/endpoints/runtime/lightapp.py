"""A light Ray Serve application in place of vLLM, for measuring Pareto's own overhead.

An endpoint's real application (`serve_config.serve_application`) spends 75-115 s starting vLLM on a small
machine, which hides the few hundred milliseconds the control plane itself adds. This one has the same life in
Ray (a declarative application named after the endpoint, under its route, scaled by its replica numbers, going
NOT_STARTED -> DEPLOYING -> RUNNING) but its replica starts in about a second and answers
`GET <route>/v1/models` like an OpenAI server would.

Select it with `PARETO_SERVE_APP_BUILDER=apps.endpoints.runtime.lightapp.light_application` in the worker's
environment; `benchmarks/endpoint_overhead.py` does. Ray must be able to import this module: start the Ray head
with the repository on its `PYTHONPATH`. `light_application` runs in Pareto (Django); `build_app` runs in Ray and
is the only part that imports Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.endpoints.models import Endpoint

IMPORT_PATH = "apps.endpoints.runtime.lightapp:build_app"


def light_application(endpoint: Endpoint) -> dict[str, Any]:
    """The Serve application of `endpoint`, with the light deployment instead of vLLM."""
    return {
        "name": endpoint.app_name,
        "route_prefix": endpoint.route_prefix,
        "import_path": IMPORT_PATH,
        "args": {
            "model_id": endpoint.served_model_id,
            "min_replicas": endpoint.min_replicas,
            "max_replicas": endpoint.max_replicas,
        },
    }


def build_app(args: dict[str, Any]) -> Any:
    """Serve's application builder (`import_path` points here): one small deployment, no CPU reserved."""
    from ray import serve

    model_id = str(args["model_id"])

    @serve.deployment(
        name="Light",
        ray_actor_options={"num_cpus": 0},
        autoscaling_config={
            "min_replicas": int(args.get("min_replicas", 1)),
            "max_replicas": int(args.get("max_replicas", 1)),
        },
    )
    class Light:
        async def __call__(self, request: Any) -> dict[str, Any]:
            return {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "pareto"}]}

    return Light.bind()  # type: ignore[attr-defined]  # @serve.deployment makes it a Deployment
