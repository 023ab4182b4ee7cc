"""One loader for every command: model references → tokenizer, base (4-bit or not), adapters."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from harness.config.model import Quantization
from harness.errors import ModelError, first_line
from harness.model.families import check_base, is_linear, model_class
from harness.model.tiny import is_tiny, tiny_model_path
from harness.runtime.env import Environment, block_hub_kernels, compute_dtype_name, torch_dtype


def resolve_model_ref(ref: str) -> str:
    """`tiny:NAME` → its cache dir, a local directory → itself, anything else → a hub id."""
    if is_tiny(ref):
        return str(tiny_model_path(ref))
    expanded = os.path.expanduser(ref)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise ModelError(f"{ref}: directory has no config.json; point to a saved model directory")
        return expanded
    if expanded.startswith((".", "/", "~")) or expanded.count("/") > 1 or os.path.exists(expanded):
        raise ModelError(
            f"{ref}: model path not found; give an existing directory, a hub id or a tiny model (tiny:llama-ko)"
        )
    return ref


@dataclass
class LoadedBase:
    model: object
    tokenizer: object
    ref: str
    path: str
    quantization: Quantization
    compute_dtype: str


def bnb_config(quantization: Quantization, dtype_name: str):
    from transformers import BitsAndBytesConfig

    if quantization.mode == "none":
        return None
    if quantization.mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization.mode,
        bnb_4bit_use_double_quant=quantization.double_quant,
        bnb_4bit_compute_dtype=torch_dtype(dtype_name),
    )


def load_tokenizer(ref: str, path: str | None = None):
    from transformers import AutoTokenizer

    path = path or resolve_model_ref(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{ref}: cannot load tokenizer ({first_line(exc)}); check the reference or HF_HUB_OFFLINE"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(
    ref: str,
    quantization: Quantization,
    env: Environment,
    local_rank: int = 0,
    device_map: str = "single",
    max_memory_per_gpu: str | None = None,
) -> LoadedBase:
    """`local_rank`: the GPU of this process under `accelerate launch` (each rank holds its own copy).
    `device_map="auto"`: one process splits the base over every visible GPU, each capped at
    `max_memory_per_gpu` (e.g. "70GiB"), for a base too large for one GPU."""
    from transformers import AutoConfig

    block_hub_kernels()
    path = resolve_model_ref(ref)
    check_base(ref, path)
    tokenizer = load_tokenizer(ref, path)
    dtype_name = compute_dtype_name(env, quantization.compute_dtype)
    kwargs = {"dtype": torch_dtype(dtype_name)}
    quant = bnb_config(quantization, dtype_name)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if device_map == "auto":
        from harness.runtime.distributed import launched_world_size

        if launched_world_size() > 1:
            raise ModelError(
                "models.device_map: auto splits one process's base over every visible GPU; run it "
                "as one process, not under accelerate launch or --num-processes"
            )
    if env.device == "cuda" and device_map == "auto":
        import torch

        kwargs["device_map"] = "auto"
        if max_memory_per_gpu:
            kwargs["max_memory"] = dict.fromkeys(range(torch.cuda.device_count()), max_memory_per_gpu)
    elif env.device != "cpu":
        kwargs["device_map"] = {"": local_rank if env.device == "cuda" else env.device}
    try:
        model = model_class(AutoConfig.from_pretrained(path)).from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{ref}: cannot load model ({first_line(exc)}); check the reference or HF_HUB_OFFLINE"
        ) from None
    if quant is not None and env.device == "cpu":
        _keep_plain_4bit_layout(model)
    return LoadedBase(
        model=model, tokenizer=tokenizer, ref=ref, path=path, quantization=quantization, compute_dtype=dtype_name
    )


def _keep_plain_4bit_layout(model) -> None:
    """Turn off bitsandbytes' CPU repacking of 4-bit weights.

    On CPUs with AVX512-BF16, bitsandbytes repacks a Linear4bit's weights on its first eval-mode forward
    for a kernel that computes in bf16 whatever compute_dtype says, and unpacks them again on state_dict()
    (every checkpoint or adapter save) without restoring them exactly. An evaluation during training would
    then shift the frozen base, a resumed run would diverge from an uninterrupted one, and the same adapter
    would score differently depending on what ran before. The plain layout gives the same numbers always.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def base_signature(model) -> dict:
    """What an adapter must match: architecture and the shapes LoRA attaches to."""
    return config_signature(model.config, type(model).__name__)


def config_signature(config, fallback_architecture: str = "?") -> dict:
    """`base_signature` from a model config alone, so a mismatch is caught before weights load."""
    return {
        "architecture": (getattr(config, "architectures", None) or [fallback_architecture])[0],
        "hidden_size": getattr(config, "hidden_size", None),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "vocab_size": getattr(config, "vocab_size", None),
    }


def linear_module_names(model) -> set[str]:
    """Suffixes of the linear layers LoRA can target (4-bit layers and GPT-2's Conv1D included)."""

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if is_linear(module)}


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable JSON ({first_line(exc)})") from None
