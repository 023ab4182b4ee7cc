"""Full models scored beside the base (`harness eval --model NAME=PATH`): a merged export, each with its
own load, so "base + adapter" and "merged" sit side by side in one run.

A full model loads as exported: unquantized, computing in the base's dtype, since that is how an
export is served and the question a merged column answers is whether the export behaves like the
adapter it came from; `quantization: base` loads it the way the base loads instead (the same
bitsandbytes settings). Prompts are built once with the base's tokenizer, so a model whose
vocabulary differs is refused: it belongs in a run of its own, as that run's --base.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.model import Quantization
from harness.errors import ModelError
from harness.model.loading import LoadedBase, load_base
from harness.runtime.env import Environment

QUANTIZATION_CHOICES = ("none", "base")


@dataclass
class FullModel:
    name: str
    loaded: LoadedBase
    sha256: str  # the content of its directory (harness.model.fingerprint): what resume keys on


def full_quantization(base: LoadedBase, choice: str) -> Quantization:
    """The quantization a full model loads with: none (as exported, in the base's compute dtype) or the base's."""
    if choice == "base":
        return base.quantization
    return Quantization(mode="none", compute_dtype=base.compute_dtype)


def load_full_models(
    models: dict[str, str], base: LoadedBase, choice: str, env: Environment, local_rank: int = 0
) -> dict[str, FullModel]:
    from harness.model.fingerprint import directory_sha256

    loaded = {}
    for name, path in models.items():
        model = load_base(path, full_quantization(base, choice), env, local_rank=local_rank)
        if model.tokenizer.get_vocab() != base.tokenizer.get_vocab():
            raise ModelError(
                f"--model {name}={path}: its tokenizer differs from the base's ({base.ref}), with which every "
                "prompt is built; evaluate it in a run of its own with --base"
            )
        model.model.eval()
        loaded[name] = FullModel(name, model, directory_sha256(model.path))
    return loaded
