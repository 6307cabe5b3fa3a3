"""Build the tiny random-weight Llama that local endpoints serve, and optionally put it in the catalog.

Needs the runtime extras (torch, transformers; see docs/runtime.md). They are imported only when the command runs,
so the base install of the project can load this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

CATALOG_NAME = "tiny-llama"


def default_out_dir() -> Path:
    var = os.environ.get("PARETO_VAR_DIR") or Path(settings.BASE_DIR) / "var"
    return Path(var) / "models" / CATALOG_NAME


def catalog_fields(info: dict[str, Any]) -> dict[str, Any]:
    """CatalogModel fields for a model `build_tiny_model` described."""
    return {
        "source": info["path"],
        "family": info["family"],
        "parameter_count": info["parameter_count"],
        "context_length": info["context_length"],
        "license": "Apache-2.0",
        "dtype": info["dtype"],
        "num_layers": info["num_layers"],
        "hidden_size": info["hidden_size"],
        "num_attention_heads": info["num_attention_heads"],
        "num_kv_heads": info["num_kv_heads"],
        "head_dim": info["head_dim"],
        "default_engine_args": {"max_model_len": 1024, "dtype": info["dtype"]},
    }


class Command(BaseCommand):
    help = "Build the tiny random-weight demo Llama (offline, deterministic); --register adds it to the catalog."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, default=None, help="Output directory (default: var/models/tiny-llama).")
        parser.add_argument(
            "--register",
            action="store_true",
            help=f'Create or update the catalog model "{CATALOG_NAME}" with source = the absolute output path.',
        )
        parser.add_argument("--json", action="store_true", help="Print the model description as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            import torch  # noqa: F401  (fail early with a clear message)
            import transformers  # noqa: F401
        except ImportError as exc:
            raise CommandError(
                f"build_tiny_model needs the runtime extras ({exc.name} is missing): run scripts/install-runtime."
            ) from exc
        from apps.catalog.tinymodel import build_tiny_model

        out = (options["out"] or default_out_dir()).expanduser().resolve()
        try:
            info = build_tiny_model(out)
        except FileExistsError as exc:
            raise CommandError(str(exc)) from exc

        if options["json"]:
            self.stdout.write(json.dumps(info, indent=2))
        else:
            self.stdout.write(
                f"Built {info['path']}: {info['parameter_count']:,} parameters, {info['num_layers']} layers, "
                f"hidden {info['hidden_size']}, {info['num_attention_heads']} heads (head_dim {info['head_dim']}), "
                f"context {info['context_length']}, {info['size_bytes'] / 1e6:.2f} MB."
            )
        if options["register"]:
            self._register(info)

    def _register(self, info: dict[str, Any]) -> None:
        from apps.audit.services import Actor
        from apps.catalog.models import CatalogModel
        from apps.catalog.services import catalog_model_create, catalog_model_update

        fields = catalog_fields(info)
        existing = CatalogModel.objects.filter(name=CATALOG_NAME).first()
        if existing is None:
            catalog_model_create(actor=Actor.system(), name=CATALOG_NAME, **fields)
            self.stdout.write(f'Added "{CATALOG_NAME}" to the catalog.')
            return
        changes = {name: value for name, value in fields.items() if getattr(existing, name) != value}
        if changes:
            catalog_model_update(actor=Actor.system(), model=existing, **changes)
            self.stdout.write(f'Updated "{CATALOG_NAME}" in the catalog: {", ".join(sorted(changes))}.')
        else:
            self.stdout.write(f'"{CATALOG_NAME}" is already in the catalog and up to date.')
