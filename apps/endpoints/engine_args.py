"""The vLLM engine arguments a team may set, with their types and ranges.

Anything not listed is refused: engine arguments reach a shared cluster, and some (e.g. `trust_remote_code`,
`download_dir`) would let a request run code or touch paths it should not. `max_model_len` and the
tensor-parallel size are fields of the endpoint itself, not engine arguments here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError


@dataclass(frozen=True)
class Arg:
    kind: type
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def check(self, name: str, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValidationError(f"{name} must be true or false.")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"{name} must be a whole number.")
        elif self.kind is float:
            # NaN passes every range check, and PostgreSQL's jsonb cannot store it.
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValidationError(f"{name} must be a number.")
            value = float(value)
        elif self.kind is str and not isinstance(value, str):
            raise ValidationError(f"{name} must be text.")
        if self.choices is not None and value not in self.choices:
            raise ValidationError(f"{name} must be one of: {', '.join(map(str, self.choices))}.")
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"{name} must be at least {self.minimum}.")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(f"{name} must be at most {self.maximum}.")
        return value


ALLOWED: dict[str, Arg] = {
    "dtype": Arg(str, choices=("auto", "bfloat16", "float16", "float32"), help="Weights and activations dtype."),
    "gpu_memory_utilization": Arg(float, 0.1, 0.98, help="Share of GPU memory vLLM may take."),
    "max_num_seqs": Arg(int, 1, 4096, help="Sequences batched together."),
    "max_num_batched_tokens": Arg(int, 16, 1_048_576, help="Tokens per scheduler step."),
    "enable_prefix_caching": Arg(bool, help="Reuse the KV cache of shared prompt prefixes."),
    "enable_chunked_prefill": Arg(bool, help="Split long prefills across steps."),
    "enforce_eager": Arg(bool, help="Disable CUDA graphs (slower, less memory)."),
    "kv_cache_dtype": Arg(str, choices=("auto", "fp8", "fp8_e5m2", "fp8_e4m3"), help="KV-cache element type."),
    "quantization": Arg(str, choices=("awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors")),
    "block_size": Arg(int, choices=(8, 16, 32, 64, 128), help="KV-cache block size in tokens."),
    "swap_space": Arg(int, 0, 64, help="CPU swap space per GPU, GiB."),
    "seed": Arg(int, 0, 2**31 - 1),
    "max_logprobs": Arg(int, 0, 100),
}


def validate_engine_args(args: Any) -> dict[str, Any]:
    """Return the cleaned arguments or raise ValidationError({"engine_args": [...]}) naming each bad key."""
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise ValidationError({"engine_args": "Give an object of engine argument -> value."})
    errors: list[str] = []
    cleaned: dict[str, Any] = {}
    for name, value in args.items():
        spec = ALLOWED.get(name)
        if spec is None:
            errors.append(f"{name} is not an allowed engine argument (allowed: {', '.join(sorted(ALLOWED))}).")
            continue
        try:
            cleaned[name] = spec.check(name, value)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError({"engine_args": errors})
    return cleaned
