"""Build the tiny random-weight demo model, fully offline.

No model hub is reachable on the machines Pareto is developed and demoed on, so the project makes its own model: a
two-layer Llama with random weights and a small byte-level BPE tokenizer trained on Python's own standard library
sources. vLLM loads it like any Hugging Face checkpoint; its output is gibberish, but scheduling, the KV cache, the
OpenAI API and the Prometheus metrics are all real.

This module imports only the standard library at import time; `build_tiny_model` needs `torch`, `transformers` and
`tokenizers` (the runtime extras, see docs/runtime.md and scripts/install-runtime). It does not need Django.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

SEED = 1234

# Architecture. head_dim must stay 64 or more: vLLM's CPU attention kernel rejects head_dim 16.
VOCAB_SIZE = 1024
HIDDEN_SIZE = 128
INTERMEDIATE_SIZE = 256
NUM_LAYERS = 2
NUM_HEADS = 2
NUM_KV_HEADS = 2
HEAD_DIM = HIDDEN_SIZE // NUM_HEADS
CONTEXT_LENGTH = 2048
DTYPE = "bfloat16"

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]

# Messages are rendered as `<|role|>\ncontent</s>\n`; a generation prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# Standard-library files the tokenizer is trained on, in this order. Missing ones are skipped.
CORPUS_FILES = (
    "this.py",
    "textwrap.py",
    "string.py",
    "argparse.py",
    "dataclasses.py",
    "functools.py",
    "pathlib.py",
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "email/message.py",
    "http/client.py",
    "logging/__init__.py",
)

# A little English and chat-shaped text, so prompts written in English get merges too.
EXTRA_TEXT = """\
Pareto is a self-hosted control plane for LLM inference. Teams request model endpoints, watch them come up, and read
their latency and cost. Inference lives on a three-way tradeoff between accuracy, latency and cost.
The quick brown fox jumps over the lazy dog. Hello! How are you today? What is the capital of France?
Please summarise the following text in one sentence. Write a short poem about the sea.
You are a helpful assistant. Answer the question as briefly as you can.
"""


def corpus_texts() -> list[str]:
    """The training text: the listed standard-library sources (as found on this Python) and EXTRA_TEXT."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for name in CORPUS_FILES:
        path = stdlib / name
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    texts.append(EXTRA_TEXT)
    chat = "".join(f"{role}\n{EXTRA_TEXT}{EOS}\n" for role in ROLE_TOKENS)
    texts.append(chat)
    return texts


def _train_tokenizer(texts: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS, UNK, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _dir_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        digest.update(p.relative_to(path).as_posix().encode())
        digest.update(p.read_bytes())
    return digest.hexdigest()


def build_tiny_model(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Build the tiny Llama and its tokenizer into `out_dir` (replacing a previous build) and describe it.

    Deterministic: the same Python standard library and library versions give byte-identical files.
    Returns the architecture numbers plus `path`, `size_bytes` and `sha256` (over all files).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise FileExistsError(f"{out} exists and does not look like a model directory; not replacing it.")

    tokenizer_object = _train_tokenizer(corpus_texts())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=CONTEXT_LENGTH,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=CONTEXT_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype=DTYPE,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(getattr(torch, DTYPE)).eval()
    model.generation_config.do_sample = False
    parameter_count = sum(p.numel() for p in model.parameters())

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # mkdtemp makes the directory private; Ray workers and other users on the machine need to read it.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    return {
        "path": str(out),
        "family": "llama",
        "dtype": DTYPE,
        "vocab_size": VOCAB_SIZE,
        "num_layers": NUM_LAYERS,
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_attention_heads": NUM_HEADS,
        "num_kv_heads": NUM_KV_HEADS,
        "head_dim": HEAD_DIM,
        "parameter_count": parameter_count,
        "context_length": CONTEXT_LENGTH,
        "size_bytes": _dir_size(out),
        "sha256": _dir_digest(out),
    }
