"""Which weights the engine computes with, from the `engine` setting (auto | fast | plain): the 4-bit
base dequantized once ("dense", the fast engine) or the 4-bit base itself ("4bit"), with a line saying
why and which kernels run.

"engine" names the setting; what it settles to is called the weights here, so that the two senses
do not share a word."""

from __future__ import annotations

from harness.engine import fused
from harness.engine.model_info import encoder_decoder
from harness.engine.step_attention import step_attention_note
from harness.errors import ModelError
from harness.model.adapters import ModelSet
from harness.model.dense import plan
from harness.runtime.console import human_bytes
from harness.runtime.env import torch_dtype


def choose_weights(models: ModelSet, engine: str, where: str, memory: tuple[int, int] | None = None) -> tuple[str, str]:
    """("dense" or "4bit", a line saying why) for engine auto | fast | plain; `memory`: see dense.plan."""
    base = models.base
    if encoder_decoder(base.model):
        return _encoder_decoder(base.model, engine, where)
    if engine == "plain":
        return "4bit", "engine plain: the 4-bit base with adapters attached, transformers' generate"
    p = plan(base.model, torch_dtype(base.compute_dtype), memory)
    if p.fits:
        return "dense", (
            f"engine fast: base weights dequantized to {base.compute_dtype} once "
            f"({human_bytes(p.bytes_needed)}), static-cache decoding" + _kernels_note(base.model)
        )
    if engine == "fast":
        raise ModelError(f"{where}: engine fast is not possible here: {p.reason}; use engine auto or plain")
    return "4bit", f"engine auto: staying on the 4-bit path because {p.reason}" + _kernels_note(base.model)


def _encoder_decoder(model, engine: str, where: str) -> tuple[str, str]:
    """The static-cache decoder and the dequantized weights serve decoder-only models: an
    encoder-decoder always runs transformers' generate on the 4-bit base."""
    name = type(model).__name__
    if engine == "fast":
        raise ModelError(
            f"{where}: engine fast is not possible here: {name} is an encoder-decoder, which only the plain "
            "path runs; use engine auto or plain"
        )
    return "4bit", (
        f"engine plain: {name} is an encoder-decoder; transformers' generate on the 4-bit base with adapters "
        "attached (the fast engine's static-cache decoder and dequantized weights serve decoder-only models)"
    )


def _kernels_note(model) -> str:
    notes = [note for note in (fused.describe(model), step_attention_note(model)) if note]
    return "".join(f", {note}" for note in notes)
