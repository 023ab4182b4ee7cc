"""Verification of an export: its logits and greedy tokens on probe prompts against base + adapters
unmerged (a merge error) and against the 4-bit base + adapters as harness eval loads them (the
quantization gap)."""

from __future__ import annotations

from pathlib import Path

from harness.config.generation import GenerationSettings
from harness.config.model import Quantization
from harness.engine.requests import GenerationRequest, RunOptions
from harness.errors import HarnessError
from harness.merge import seq2seq_probe
from harness.merge.combine import combined
from harness.model.families import is_encoder_decoder, model_class
from harness.model.loading import load_base
from harness.model.probe import prompt_logits
from harness.runtime.env import release_cuda_memory

# Merging is exact in real arithmetic; what is left is rounding in the export dtype.
MERGE_TOLERANCE = {"fp32": 1e-3, "bf16": 0.25, "fp16": 0.05}
PROBES = [
    "### 문맥:\n은솔마을은 1962년에 광산 노동자들이 모여 만든 마을이다.\n\n### 질문:\n은솔마을은 언제 생겼는가?\n\n### 답변:\n",
    "한국의 수도는 서울이며, 가장 큰 항구 도시는",
    "### Instruction:\nSummarise in one sentence why the sky is blue.\n\n### Response:\n",
    "The quick brown fox jumps over the lazy dog because",
]


def probe_outputs(model, tokenizer, prompts: list[str], greedy_tokens: int, teacher: list[dict] | None = None):
    """Per prompt: the logits over the prompt (float32, CPU) and the greedy continuation of exactly
    `greedy_tokens` tokens (end tokens held off), through the engine's plain path. An encoder-decoder
    reads the prompt as its source and is compared over the decoder's tokens instead, those of the
    `teacher` outputs where given (harness.merge.seq2seq_probe)."""
    import torch

    from harness.engine.generation import generate

    if is_encoder_decoder(model.config):
        return seq2seq_probe.probe_outputs(model, tokenizer, prompts, greedy_tokens, teacher)
    outputs = []
    model.eval()
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        outputs.append({"logits": prompt_logits(model, ids)})
    exactly = GenerationSettings(max_new_tokens=greedy_tokens, min_new_tokens=greedy_tokens)
    options = RunOptions(settings=exactly, batch_size=1, engine="plain")

    def keep(index: int, result) -> None:
        outputs[index]["greedy"] = list(result.tokens)

    # The engine seeds its generator; a dare merge draws from the global one after verification.
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        generate(model, tokenizer, [GenerationRequest(p) for p in prompts], options, keep)
    return outputs


def compare(a: list[dict], b: list[dict]) -> dict:
    max_diff, total, count, agree, tokens = 0.0, 0.0, 0, 0, 0
    for x, y in zip(a, b):
        diff = (x["logits"] - y["logits"]).abs()
        max_diff = max(max_diff, float(diff.max()))
        total += float(diff.sum())
        count += diff.numel()
        agree += sum(int(p == q) for p, q in zip(x["greedy"], y["greedy"]))
        tokens += max(len(x["greedy"]), len(y["greedy"]))
    return {
        "max_abs_logit_diff": max_diff,
        "mean_abs_logit_diff": total / count if count else 0.0,
        "greedy_token_agreement": agree / tokens if tokens else 1.0,
    }


def require_finite(outputs: list[dict], what: str, consequence: str) -> None:
    """Verification compares logits by their largest difference, and max() over NaN says nothing:
    a model that computes NaN or inf is refused before it is compared, saved or uploaded."""
    for probe, output in enumerate(outputs, 1):
        if not bool(output["logits"].isfinite().all()):
            raise HarnessError(
                f"{what} computes NaN or infinite logits on probe {probe}; {consequence}; "
                "check the adapters (harness eval shows their metrics) and the --dtype"
            )


def export_outputs(path: Path, probes, dtype, greedy_tokens, teacher: list[dict] | None = None):
    """The export as a user will load it: AutoModelForCausalLM (AutoModelForSeq2SeqLM for an
    encoder-decoder) alone, no peft, no harness."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    model = model_class(AutoConfig.from_pretrained(path)).from_pretrained(
        path, dtype=dtype, device_map={"": 0} if torch.cuda.is_available() else None
    )
    outputs = probe_outputs(model, AutoTokenizer.from_pretrained(path), probes, greedy_tokens, teacher)
    del model
    release_cuda_memory()
    return outputs


def evaluated_outputs(req, infos, quant: Quantization, env, probes, teacher: list[dict] | None = None):
    """Base in 4-bit + adapters, as harness eval loads them."""
    base = load_base(req.base, quant, env)
    model = combined(base, infos, req)
    outputs = probe_outputs(model, base.tokenizer, probes, req.greedy_tokens, teacher)
    del model, base
    release_cuda_memory()
    return outputs


def verification(req, reference: list[dict], export_out: list[dict], evaluated: list[dict]) -> dict:
    """The record's verification: both gaps, their tolerances, what failed and a note on the gap."""
    merge_gap = compare(export_out, reference)
    quant_gap = compare(export_out, evaluated)
    merge_tol = req.tolerance if req.tolerance is not None else MERGE_TOLERANCE[req.dtype]
    # Against the 4-bit path only a --dequantize export is expected to agree; a plain export's
    # gap is reported (that is the point) and fails only when the user sets a tolerance.
    quant_tol = req.quantization_tolerance
    if quant_tol is None and req.dequantize:
        quant_tol = MERGE_TOLERANCE[req.dtype] * 10
    failures = []
    if merge_gap["max_abs_logit_diff"] > merge_tol:
        failures.append(
            f"merge error: export differs from base + adapter unmerged by "
            f"{merge_gap['max_abs_logit_diff']:.3g} > {merge_tol:g}"
        )
    if quant_tol is not None and quant_gap["max_abs_logit_diff"] > quant_tol:
        failures.append(
            f"quantization gap: export differs from the evaluated 4-bit base + adapter by "
            f"{quant_gap['max_abs_logit_diff']:.3g} > {quant_tol:g}"
            + ("" if req.dequantize else "; merge with --dequantize to export what was evaluated")
        )
    return {
        "export_vs_unmerged": {**merge_gap, "tolerance": merge_tol},
        "export_vs_evaluated_4bit": {**quant_gap, "tolerance": quant_tol},
        "passed": not failures,
        "failures": failures,
        "note": _gap_note(req, quant_gap, merge_tol),
    }


def _gap_note(req, quant_gap: dict, merge_tol: float) -> str | None:
    if req.dequantize or quant_gap["max_abs_logit_diff"] <= merge_tol:
        return None
    return (
        f"This export merges into the original {req.dtype} weights, but the adapter was trained and evaluated on "
        f"the NF4 base: it differs from the evaluated model by up to {quant_gap['max_abs_logit_diff']:.3g} in the "
        f"logits ({quant_gap['greedy_token_agreement']:.0%} greedy agreement). Merge with --dequantize to export "
        f"the model that was evaluated."
    )
