"""Demo data for trying Pareto on one machine: teams, one local user per role, GPU types, models, a Ray cluster.

The cluster is the local Ray head that `./pareto up` starts (CPU-only, so its "GPU" type is CPU: one per vLLM
replica), and the catalog includes the tiny demo model that `./pareto up` builds into var/models/tiny-llama; so a
lead can request an endpoint that really serves, on a laptop.

Idempotent: it creates what is missing and never changes a row that exists, so running it again (every
`./pareto up` does) keeps whatever was edited in the portal. Every write goes through the services as
`Actor.system()`, so each one leaves an audit event like any other change.

Passwords are random per installation. They are kept in the logins file (mode 0600, `var/demo_logins.json` by
default) so that the launcher can print them at every start; a user created while the file was missing shows
"not known" and keeps its password.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from apps.accounts.models import User
from apps.accounts.services import user_create_local
from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.catalog.services import catalog_model_create
from apps.inventory.models import Cluster, ClusterGpuInventory, GpuPrice, GpuType
from apps.inventory.services import cluster_create, cluster_inventory_set, gpu_price_add, gpu_type_create
from apps.teams.models import Budget, GpuQuota, Membership, Team
from apps.teams.services import budget_set, membership_add, quota_set, team_create
from controlplane.launcher.rayhead import NUM_CPUS, RayHead

EXAMPLE_PRICE_NOTE = "example price"
EXAMPLE_PRICES_FROM = datetime(2025, 1, 1, tzinfo=UTC)

TEAMS = [
    {"slug": "research", "name": "Research", "cost_center": "CC-1001"},
    {"slug": "product", "name": "Product", "cost_center": "CC-2002"},
    {"slug": "platform", "name": "Platform engineering", "cost_center": "CC-3003"},
]


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    is_platform_admin: bool = False
    is_finance: bool = False
    team: str | None = None
    team_role: str = Membership.Role.MEMBER


USERS = [
    DemoUser("admin", "platform admin", is_platform_admin=True),
    DemoUser("finance", "finance", is_finance=True),
    DemoUser("research-lead", "lead of Research", team="research", team_role=Membership.Role.LEAD),
    DemoUser("research-member", "member of Research", team="research", team_role=Membership.Role.MEMBER),
    DemoUser("product-lead", "lead of Product", team="product", team_role=Membership.Role.LEAD),
]

# Node labels are the ones NVIDIA's GPU feature discovery sets; prices are examples, not quotes.
GPU_TYPES: list[dict[str, Any]] = [
    {
        "sku": "H100-80GB",
        "memory_gib": 80,
        "node_selector_label": "nvidia.com/gpu.product",
        "node_selector_value": "NVIDIA-H100-80GB-HBM3",
        "ray_accelerator_type": "H100",
        "hourly_price": Decimal("4.00"),
    },
    {
        "sku": "A100-80GB",
        "memory_gib": 80,
        "node_selector_label": "nvidia.com/gpu.product",
        "node_selector_value": "NVIDIA-A100-SXM4-80GB",
        "ray_accelerator_type": "A100-80G",
        "hourly_price": Decimal("2.50"),
    },
    {
        "sku": "L4",
        "memory_gib": 24,
        "node_selector_label": "nvidia.com/gpu.product",
        "node_selector_value": "NVIDIA-L4",
        "ray_accelerator_type": "L4",
        "hourly_price": Decimal("0.80"),
    },
    {
        # What a replica gets on a CPU-only cluster (the local Ray head): one CPU per "GPU" of the endpoint.
        "sku": "CPU",
        "memory_gib": 1,
        "hourly_price": Decimal("0.05"),
    },
]

# Architecture numbers from each model's published config.json; no quality score is claimed.
CATALOG: list[dict[str, Any]] = [
    {
        "name": "Llama-3.1-8B-Instruct",
        "source": "meta-llama/Llama-3.1-8B-Instruct",
        "family": "llama",
        "parameter_count": 8_030_261_248,
        "context_length": 131_072,
        "license": "llama3.1",
        "dtype": "bfloat16",
        "num_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "recommended_gpu_type": "A100-80GB",
        "recommended_gpu_count": 1,
        "default_engine_args": {"max_model_len": 32768},
    },
    {
        "name": "Qwen2.5-7B-Instruct",
        "source": "Qwen/Qwen2.5-7B-Instruct",
        "family": "qwen2",
        "parameter_count": 7_615_616_512,
        "context_length": 32_768,
        "license": "apache-2.0",
        "dtype": "bfloat16",
        "num_layers": 28,
        "hidden_size": 3584,
        "num_attention_heads": 28,
        "num_kv_heads": 4,
        "head_dim": 128,
        "recommended_gpu_type": "L4",
        "recommended_gpu_count": 1,
        "default_engine_args": {"max_model_len": 8192},
    },
    {
        "name": "Mistral-7B-Instruct-v0.3",
        "source": "mistralai/Mistral-7B-Instruct-v0.3",
        "family": "mistral",
        "parameter_count": 7_248_023_552,
        "context_length": 32_768,
        "license": "apache-2.0",
        "dtype": "bfloat16",
        "num_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "recommended_gpu_type": "L4",
        "recommended_gpu_count": 1,
        "default_engine_args": {"max_model_len": 8192},
    },
    {
        "name": "Llama-3.1-70B-Instruct",
        "source": "meta-llama/Llama-3.1-70B-Instruct",
        "family": "llama",
        "parameter_count": 70_553_706_496,
        "context_length": 131_072,
        "license": "llama3.1",
        "dtype": "bfloat16",
        "num_layers": 80,
        "hidden_size": 8192,
        "num_attention_heads": 64,
        "num_kv_heads": 8,
        "head_dim": 128,
        "recommended_gpu_type": "H100-80GB",
        "recommended_gpu_count": 4,
        "default_engine_args": {"tensor_parallel_size": 4, "max_model_len": 32768},
    },
]

QUOTAS = [
    ("research", "CPU", 4),
    ("product", "CPU", 2),
    ("platform", "CPU", 2),
    ("research", "H100-80GB", 8),
    ("research", "A100-80GB", 4),
    ("product", "L4", 8),
    ("product", "A100-80GB", 2),
    ("platform", "L4", 4),
]


def tiny_model_entry() -> dict[str, Any]:
    """The tiny demo model as a catalog entry, from its builder's constants (no torch needed here). Its source is
    filled in when seeding: the absolute path `manage.py build_tiny_model` builds into (under PARETO_VAR_DIR)."""
    from apps.catalog import tinymodel as tm
    from apps.catalog.management.commands.build_tiny_model import CATALOG_NAME, catalog_fields

    # A Llama with tied embeddings: the embedding, per layer q/k/v/o, the gated MLP and two norms, a final norm.
    per_layer = (
        tm.HIDDEN_SIZE * tm.NUM_HEADS * tm.HEAD_DIM * 2  # q and o
        + tm.HIDDEN_SIZE * tm.NUM_KV_HEADS * tm.HEAD_DIM * 2  # k and v
        + tm.HIDDEN_SIZE * tm.INTERMEDIATE_SIZE * 3
        + tm.HIDDEN_SIZE * 2
    )
    info = {
        "path": None,
        "family": "llama",
        "dtype": tm.DTYPE,
        "num_layers": tm.NUM_LAYERS,
        "hidden_size": tm.HIDDEN_SIZE,
        "num_attention_heads": tm.NUM_HEADS,
        "num_kv_heads": tm.NUM_KV_HEADS,
        "head_dim": tm.HEAD_DIM,
        "context_length": tm.CONTEXT_LENGTH,
        "parameter_count": tm.VOCAB_SIZE * tm.HIDDEN_SIZE + tm.NUM_LAYERS * per_layer + tm.HIDDEN_SIZE,
    }
    return {"name": CATALOG_NAME, **catalog_fields(info), "recommended_gpu_type": "CPU", "recommended_gpu_count": 1}


CATALOG.append(tiny_model_entry())

BUDGETS = [("research", Decimal("60000.00")), ("product", Decimal("25000.00")), ("platform", Decimal("10000.00"))]

CLUSTER_NAME = "local-ray"


def local_cluster() -> dict[str, Any]:
    """The Ray head `./pareto up` starts, on the same ports (PARETO_RAY_*_PORT, defaults in launcher/rayhead.py)."""
    head = RayHead.local(os.environ)
    return {
        "name": CLUSTER_NAME,
        "runtime": Cluster.Runtime.RAY,
        "description": (
            f"The local Ray head of ./pareto up (`ray start --head --num-cpus={NUM_CPUS}`), CPU only: "
            f"dashboard on {head.dashboard_url}, endpoints under {head.serve_url}."
        ),
        "ray_dashboard_url": head.dashboard_url,
        "ray_serve_url": head.serve_url,
        "cpu_only": True,
        "metrics_urls": head.metrics_url,
    }


def default_logins_file() -> Path:
    return Path(settings.BASE_DIR) / "var" / "demo_logins.json"


def read_logins(path: Path) -> dict[str, str]:
    try:
        return {e["username"]: e["password"] for e in json.loads(path.read_text()) if e.get("password")}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}


def write_logins(path: Path, logins: list[dict[str, str | None]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(logins, fh, indent=2)
        fh.write("\n")


def seed_demo(*, known_passwords: dict[str, str]) -> tuple[int, list[dict[str, str | None]]]:
    """Create the missing demo rows. Returns how many rows were created and the logins to show."""
    actor = Actor.system()
    created = 0
    teams: dict[str, Team] = {}
    for data in TEAMS:
        team = Team.objects.filter(slug=data["slug"]).first()
        if team is None:
            team = team_create(actor=actor, **data)
            created += 1
        teams[team.slug] = team

    logins: list[dict[str, str | None]] = []
    for spec in USERS:
        user = User.objects.filter(username=spec.username).first()
        password = known_passwords.get(spec.username)
        if user is None:
            password = password or secrets.token_urlsafe(12)
            user = user_create_local(
                actor=actor,
                username=spec.username,
                password=password,
                email=f"{spec.username}@example.com",
                is_platform_admin=spec.is_platform_admin,
                is_finance=spec.is_finance,
            )
            created += 1
        if spec.team is not None and not Membership.objects.filter(user=user, team=teams[spec.team]).exists():
            membership_add(actor=actor, team=teams[spec.team], user=user, role=spec.team_role)
            created += 1
        logins.append({"username": spec.username, "password": password, "role": spec.role})

    gpu_types: dict[str, GpuType] = {}
    for data in GPU_TYPES:
        fields = {k: v for k, v in data.items() if k != "hourly_price"}
        gpu_type = GpuType.objects.filter(sku=fields["sku"]).first()
        if gpu_type is None:
            gpu_type = gpu_type_create(actor=actor, **fields)
            created += 1
        gpu_types[gpu_type.sku] = gpu_type
        if not GpuPrice.objects.filter(gpu_type=gpu_type).exists():
            gpu_price_add(
                actor=actor,
                gpu_type=gpu_type,
                hourly_price=data["hourly_price"],
                currency="USD",
                effective_from=EXAMPLE_PRICES_FROM,
                is_example=True,
                note=EXAMPLE_PRICE_NOTE,
            )
            created += 1

    for data in CATALOG:
        if not CatalogModel.objects.filter(name=data["name"]).exists():
            entry: dict[str, Any] = {**data, "recommended_gpu_type": gpu_types[data["recommended_gpu_type"]]}
            if entry["source"] is None:  # the tiny demo model: where build_tiny_model puts it
                from apps.catalog.management.commands.build_tiny_model import default_out_dir

                entry["source"] = str(default_out_dir().resolve())
            catalog_model_create(actor=actor, **entry)
            created += 1

    for slug, sku, limit in QUOTAS:
        if not GpuQuota.objects.filter(team=teams[slug], gpu_type=gpu_types[sku]).exists():
            quota_set(actor=actor, team=teams[slug], gpu_type=gpu_types[sku], limit=limit)
            created += 1
    for slug, amount in BUDGETS:
        if not Budget.objects.filter(team=teams[slug]).exists():
            budget_set(actor=actor, team=teams[slug], monthly_amount=amount, currency="USD", alert_thresholds=[80, 100])
            created += 1

    cluster = Cluster.objects.filter(name=CLUSTER_NAME).first()
    if cluster is None:
        cluster = cluster_create(actor=actor, **local_cluster())
        created += 1
    # The head's logical CPUs are what Pareto may hand out on it.
    if not ClusterGpuInventory.objects.filter(cluster=cluster, gpu_type=gpu_types["CPU"]).exists():
        cluster_inventory_set(actor=actor, cluster=cluster, gpu_type=gpu_types["CPU"], count=NUM_CPUS)
        created += 1
    return created, logins


class Command(BaseCommand):
    help = "Load the demo data (idempotent) and print the demo logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--logins-file",
            type=Path,
            default=None,
            help="Where the demo passwords are kept (default: var/demo_logins.json in the project).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["logins_file"] or default_logins_file()
        with transaction.atomic():
            created, logins = seed_demo(known_passwords=read_logins(path))
        write_logins(path, logins)
        self.stdout.write(f"Demo data: {created} rows created" if created else "Demo data: already present")
        if options["verbosity"] >= 1:
            for entry in logins:
                password = entry["password"] or "(set earlier, not known)"
                self.stdout.write(f"  {entry['username']:<16} {password:<20} {entry['role']}")
            self.stdout.write(f"Logins kept in {path}")
