"""The OpenAPI schemas of the Kubernetes and KubeRay types Pareto writes (schemas/*.json), as JSON Schema.

`validate(obj)` checks an object against the schema of its kind and returns the problems, each with its path.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

HERE = Path(__file__).parent / "schemas"
FILES = {
    "kubernetes.json": "https://schemas.pareto.test/kubernetes.json",
    "kuberay.json": "https://schemas.pareto.test/kuberay.json",
}
KIND_FILE = {"RayService": "kuberay.json"}


@cache
def _registry() -> Registry:
    resources = []
    for name, uri in FILES.items():
        contents = json.loads((HERE / name).read_text())
        resources.append((uri, Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@cache
def validator(kind: str) -> Draft202012Validator:
    uri = FILES[KIND_FILE.get(kind, "kubernetes.json")]
    schema = {"$ref": f"{uri}#/$defs/{kind}"}
    return Draft202012Validator(schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate(obj: dict[str, Any]) -> list[str]:
    kind = obj.get("kind")
    if not isinstance(kind, str):
        return ["kind: Required value"]
    problems = []
    for error in sorted(validator(kind).iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{path}: {error.message}")
    return problems
