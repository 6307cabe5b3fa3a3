"""Catalog reads and the KV-cache sizing figure."""

from __future__ import annotations

import pytest

from apps.catalog.models import CatalogModel
from apps.catalog.selectors import (
    catalog_families,
    catalog_model_kv_cache,
    catalog_model_list,
    dtype_bytes,
    format_bytes,
    format_parameter_count,
    kv_cache_bytes_per_token,
)
from apps.catalog.tests.factories import CatalogModelFactory


def test_kv_cache_of_a_grouped_query_model_matches_its_published_size():
    # Llama 3 8B: 32 layers, 8 KV heads of 128 dims, bf16 -> 128 KiB per token, as widely quoted.
    assert kv_cache_bytes_per_token(num_layers=32, num_kv_heads=8, head_dim=128, dtype="bfloat16") == 128 * 1024


def test_kv_cache_of_a_full_multi_head_model_is_four_times_larger():
    # Llama 2 7B has 32 KV heads (no grouping): 0.5 MiB per token in fp16.
    assert kv_cache_bytes_per_token(num_layers=32, num_kv_heads=32, head_dim=128, dtype="float16") == 512 * 1024


@pytest.mark.parametrize(
    ("dtype", "size"),
    [("bfloat16", 2), ("FP16", 2), ("float32", 4), ("fp8", 1), ("int8", 1), ("awq", 2), ("gptq", 2), ("fp8-e4m3", 1)],
)
def test_bytes_per_element_follow_the_dtype(dtype, size):
    assert dtype_bytes(dtype) == size
    assert kv_cache_bytes_per_token(num_layers=2, num_kv_heads=3, head_dim=5, dtype=dtype) == 2 * 2 * 3 * 5 * size


def test_unknown_dtype_gives_no_figure_rather_than_a_guess():
    assert dtype_bytes("mystery4") is None
    assert kv_cache_bytes_per_token(num_layers=32, num_kv_heads=8, head_dim=128, dtype="mystery4") is None


def test_sizing_for_a_catalog_model_includes_the_full_context(db):
    model = CatalogModelFactory.build(num_layers=80, num_kv_heads=8, head_dim=128, dtype="bf16", context_length=4096)
    sizing = catalog_model_kv_cache(model)
    assert sizing is not None
    assert sizing.bytes_per_token == 2 * 80 * 8 * 128 * 2
    assert sizing.bytes_per_sequence == sizing.bytes_per_token * 4096
    assert sizing.per_token_label == "320 KiB"
    assert sizing.per_sequence_label == "1.25 GiB"


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (512, "512 B"),
        (131072, "128 KiB"),
        (1536, "1.5 KiB"),
        (1073741824, "1 GiB"),
        (5 * 1024**4, "5120 GiB"),
        (200 * 1024 + 512, "200.5 KiB"),
    ],
)
def test_format_bytes_uses_binary_units(value, label):
    assert format_bytes(value) == label


@pytest.mark.parametrize(
    ("value", "label"),
    [(8_000_000_000, "8B"), (1_500_000_000, "1.5B"), (70_553_706_496, "70.6B"), (350_000_000, "350M"), (999, "999")],
)
def test_format_parameter_count(value, label):
    assert format_parameter_count(value) == label


def test_list_filters_by_status_family_and_name(db):
    a = CatalogModelFactory(name="llama-3-8b", family="llama", status=CatalogModel.Status.APPROVED)
    b = CatalogModelFactory(name="llama-3-70b", family="llama", status=CatalogModel.Status.DEPRECATED)
    c = CatalogModelFactory(name="qwen-2-7b", family="qwen", status=CatalogModel.Status.APPROVED)
    assert list(catalog_model_list()) == [b, a, c]
    assert list(catalog_model_list(status="approved")) == [a, c]
    assert list(catalog_model_list(family="llama")) == [b, a]
    assert list(catalog_model_list(search="70B")) == [b]
    assert list(catalog_model_list(status="approved", family="llama", search="8b")) == [a]
    assert catalog_families() == ["llama", "qwen"]
