"""Reads of the model catalog shared by pages and the API, and the sizing figures derived from a model."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from .models import CatalogModel

# Bytes per element of the KV cache for a model's dtype. Weight-only quantizations (AWQ, GPTQ, bitsandbytes)
# keep activations and the KV cache in 16-bit, so they size like float16; fp8/int8 models cache in 8-bit.
_DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "awq": 2,
    "gptq": 2,
    "int4": 2,
    "nf4": 2,
    "bitsandbytes": 2,
    "fp8": 1,
    "float8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "int8": 1,
}


def dtype_bytes(dtype: str) -> int | None:
    """Bytes per KV-cache element for a dtype name, or None when the dtype is not one we know."""
    return _DTYPE_BYTES.get(dtype.strip().lower().replace("-", "_"))


def kv_cache_bytes_per_token(*, num_layers: int, num_kv_heads: int, head_dim: int, dtype: str) -> int | None:
    """KV cache one token occupies: a key and a value vector per layer and KV head (2 x L x H_kv x d x bytes)."""
    size = dtype_bytes(dtype)
    if size is None:
        return None
    return 2 * num_layers * num_kv_heads * head_dim * size


def format_bytes(value: int) -> str:
    """Binary units, because GPU memory is sold in GiB: 131072 -> '128 KiB', 1342177280 -> '1.25 GiB'."""
    amount = float(value)
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            break
        amount /= 1024
    digits = 2 if amount < 10 else 1
    return f"{amount:.{digits}f}".rstrip("0").rstrip(".") + f" {unit}"


def format_parameter_count(value: int) -> str:
    """8_000_000_000 -> '8B', 1_500_000_000 -> '1.5B', 350_000_000 -> '350M'."""
    for scale, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if value >= scale:
            return f"{value / scale:.1f}".removesuffix(".0") + suffix
    return str(value)


@dataclass(frozen=True)
class KvCacheSizing:
    dtype_bytes: int
    bytes_per_token: int
    context_length: int

    @property
    def bytes_per_sequence(self) -> int:
        """One sequence that fills the whole context window."""
        return self.bytes_per_token * self.context_length

    @property
    def per_token_label(self) -> str:
        return format_bytes(self.bytes_per_token)

    @property
    def per_sequence_label(self) -> str:
        return format_bytes(self.bytes_per_sequence)


def catalog_model_kv_cache(model: CatalogModel) -> KvCacheSizing | None:
    per_token = kv_cache_bytes_per_token(
        num_layers=model.num_layers, num_kv_heads=model.num_kv_heads, head_dim=model.head_dim, dtype=model.dtype
    )
    if per_token is None:
        return None
    return KvCacheSizing(
        dtype_bytes=dtype_bytes(model.dtype) or 0, bytes_per_token=per_token, context_length=model.context_length
    )


def catalog_model_list(*, status: str = "", family: str = "", search: str = "") -> QuerySet[CatalogModel]:
    """Catalog models filtered by status, family and a name search, with the recommended GPU type joined."""
    qs = CatalogModel.objects.select_related("recommended_gpu_type").order_by("name")
    if status:
        qs = qs.filter(status=status)
    if family:
        qs = qs.filter(family=family)
    if search:
        qs = qs.filter(name__icontains=search.strip())
    return qs


def catalog_families() -> list[str]:
    """Families in use, for the filter."""
    return list(CatalogModel.objects.exclude(family="").order_by("family").values_list("family", flat=True).distinct())
