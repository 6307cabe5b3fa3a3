"""validate_engine_args: only allowlisted vLLM arguments, with their types, ranges and choices."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.endpoints.engine_args import ALLOWED, validate_engine_args


def errors_of(args) -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate_engine_args(args)
    assert set(info.value.message_dict) == {"engine_args"}
    return info.value.message_dict["engine_args"]


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"dtype": "bfloat16", "kv_cache_dtype": "fp8"},
        {"gpu_memory_utilization": 0.9},
        {"gpu_memory_utilization": 0.1},
        {"gpu_memory_utilization": 0.98},
        {"max_num_seqs": 1, "max_num_batched_tokens": 8192, "swap_space": 0, "seed": 2**31 - 1},
        {"enable_prefix_caching": True, "enable_chunked_prefill": False, "enforce_eager": True},
        {"block_size": 16, "quantization": "awq", "max_logprobs": 0},
    ],
)
def test_valid_arguments_come_back_unchanged(args):
    assert validate_engine_args(args) == args


def test_none_means_no_arguments():
    assert validate_engine_args(None) == {}


def test_a_whole_number_for_a_fraction_becomes_a_float():
    cleaned = validate_engine_args({"gpu_memory_utilization": 0.5, "seed": 7})
    assert isinstance(cleaned["gpu_memory_utilization"], float)
    assert isinstance(cleaned["seed"], int)


@pytest.mark.parametrize("name", ["trust_remote_code", "download_dir", "tensor_parallel_size", "max_model_len"])
def test_unknown_or_endpoint_level_keys_are_refused_by_name(name):
    (message,) = errors_of({name: True})
    assert message.startswith(f"{name} is not an allowed engine argument")
    assert "allowed: " in message and "gpu_memory_utilization" in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # booleans are not numbers, and numbers are not booleans
        ({"max_num_seqs": True}, "max_num_seqs must be a whole number."),
        ({"seed": False}, "seed must be a whole number."),
        ({"gpu_memory_utilization": True}, "gpu_memory_utilization must be a number."),
        ({"enforce_eager": 1}, "enforce_eager must be true or false."),
        ({"enable_prefix_caching": "true"}, "enable_prefix_caching must be true or false."),
        # other wrong types
        ({"max_num_seqs": 2.5}, "max_num_seqs must be a whole number."),
        ({"max_num_seqs": "64"}, "max_num_seqs must be a whole number."),
        ({"gpu_memory_utilization": "0.9"}, "gpu_memory_utilization must be a number."),
        ({"gpu_memory_utilization": float("nan")}, "gpu_memory_utilization must be a number."),
        ({"gpu_memory_utilization": float("inf")}, "gpu_memory_utilization must be a number."),
        ({"dtype": 16}, "dtype must be text."),
        # ranges
        ({"gpu_memory_utilization": 0.99}, "gpu_memory_utilization must be at most 0.98."),
        ({"gpu_memory_utilization": 0.05}, "gpu_memory_utilization must be at least 0.1."),
        ({"gpu_memory_utilization": 1}, "gpu_memory_utilization must be at most 0.98."),
        ({"max_num_seqs": 0}, "max_num_seqs must be at least 1."),
        ({"max_num_seqs": 4097}, "max_num_seqs must be at most 4096."),
        ({"swap_space": -1}, "swap_space must be at least 0."),
        ({"seed": 2**31}, f"seed must be at most {2**31 - 1}."),
        ({"max_num_batched_tokens": 15}, "max_num_batched_tokens must be at least 16."),
        # choices
        ({"dtype": "int4"}, "dtype must be one of: auto, bfloat16, float16, float32."),
        ({"block_size": 24}, "block_size must be one of: 8, 16, 32, 64, 128."),
        ({"kv_cache_dtype": "FP8"}, "kv_cache_dtype must be one of: auto, fp8, fp8_e5m2, fp8_e4m3."),
        ({"quantization": "gguf"}, "quantization must be one of: awq, gptq, fp8, bitsandbytes, compressed-tensors."),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_the_argument(args, message):
    assert errors_of(args) == [message]


def test_every_bad_key_is_reported_at_once():
    messages = errors_of({"dtype": "int4", "trust_remote_code": True, "max_num_seqs": 0, "enforce_eager": True})
    assert len(messages) == 3
    assert [m.split(" ", 1)[0] for m in messages] == ["dtype", "trust_remote_code", "max_num_seqs"]


@pytest.mark.parametrize("args", [["dtype"], "dtype=auto", 42, True])
def test_arguments_must_be_an_object(args):
    assert errors_of(args) == ["Give an object of engine argument -> value."]


def test_the_allowlist_never_lets_code_or_paths_through():
    risky = {"trust_remote_code", "download_dir", "load_format", "tokenizer", "model", "worker_cls", "hf_overrides"}
    assert not risky & set(ALLOWED)
