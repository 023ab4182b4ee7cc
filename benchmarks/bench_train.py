"""Training rows: harness train beside plain TRL scripts, same model, data, seed and 20 steps.

(a) plain_trl          the seed tutorials' script: micro-batch 4 × accumulation 4, paged 8-bit AdamW,
                       gradient checkpointing
(b) plain_trl_liger    the same with use_liger_kernel=True
(c) tuned_trl          Liger, micro-batch 16 × accumulation 1, no gradient checkpointing
(d) harness_seed       harness train with the seed config (gradient_checkpointing: true, the low-memory mode)
(e) harness_whole_gpu  the same config with gradient_checkpointing and dequantize_base on auto

Every row: tokens/s (non-padding input tokens over the wall time of trainer construction + training),
peak GPU memory (reset between rows), the loss at step 20 and at the last step. Rows run in this order
because Liger patches transformers' Llama module for the whole process: (a) must come before any
Liger row. A warm-up first (the Triton kernels Liger compiles, called directly, then two thrown-away
steps of (a)) keeps the first row from paying for the process's start. Rows are written to
$OUT/bench-train.json as they finish.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from common import SEED_LORA, free, peak, seed_training

STEPS, BATCH, ACCUMULATION = 20, 4, 4


def train_config(base: str, data: str, out: Path, smoke: bool, **training):
    from harness.config import TrainConfig, validate

    return validate(TrainConfig, seed_settings(base, data, out, smoke, **training), "benchmark")


def seed_settings(base: str, data: str, out: Path, smoke: bool, **training) -> dict:
    """The seed tutorials' settings as a train config (plain data, as a YAML file holds it)."""
    steps, batch, accum = (4, 2, 2) if smoke else (STEPS, BATCH, ACCUMULATION)
    return {
        "name": "bench",
        "base": base,
        "output_dir": str(out),
        "quantization": {"mode": "nf4", "double_quant": True, "compute_dtype": "auto"},
        "lora": SEED_LORA,
        "data": {
            "path": data,
            "template": "qa-ko",
            "validation_fraction": 0,
            "max_length": 512,
            "limit": steps * batch * accum,
        },
        "training": {**seed_training(steps, batch, accum, smoke), **training},
    }


def plain_trl(
    config,
    rows,
    *,
    liger: bool = False,
    batch: int | None = None,
    accumulation: int | None = None,
    checkpointing: bool | None = None,
    steps: int | None = None,
) -> dict:
    """What a careful user writes by hand with transformers + peft + TRL (the seed settings by default)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, set_seed
    from trl import SFTConfig, SFTTrainer

    from harness.model.loading import resolve_model_ref

    if not liger:
        _refuse_liger_patches()
    t = config.training
    batch = batch or t.batch_size
    accumulation = accumulation or t.gradient_accumulation
    checkpointing = bool(t.gradient_checkpointing) if checkpointing is None else checkpointing
    path = resolve_model_ref(config.base)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=dtype,
        device_map={"": 0} if cuda else None,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        ),
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=SEED_LORA["target_modules"], task_type="CAUSAL_LM"
    )
    args = SFTConfig(
        output_dir=str(Path(config.output_dir).with_name("plain-trl")),
        max_steps=steps or t.max_steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=t.learning_rate,
        optim=t.optimizer,
        gradient_checkpointing=checkpointing,
        bf16=cuda,
        use_cpu=not cuda,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=t.seed,
        max_length=512,
        include_num_input_tokens_seen="non_padding",
        lr_scheduler_type=t.scheduler,
        max_grad_norm=t.max_grad_norm,
        use_liger_kernel=liger,
    )
    free()
    started = time.time()
    set_seed(t.seed)  # TRL draws LoRA's initial weights before the Trainer seeds
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=lora
    )
    trainer.train()
    wall = time.time() - started
    losses = {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
    tokens = int(trainer.state.num_input_tokens_seen)
    result = {
        "tokens_per_second": tokens / wall,
        "peak_memory_bytes": peak(),
        **_losses(losses),
        "tokens": tokens,
        "wall_s": wall,
        "settings": {
            "micro_batch": batch,
            "accumulation": accumulation,
            "gradient_checkpointing": checkpointing,
            "liger": liger,
        },
    }
    del trainer, model
    free()
    return result


def harness_train(config) -> dict:
    from harness.train.recipe import train

    free()
    shown = logging.getLogger(
        "harness.train.recipe"
    )  # its lines (examples, plan) on stdout, as harness train shows them
    handler = logging.StreamHandler(sys.stdout)
    shown.addHandler(handler)
    shown.setLevel(logging.INFO)
    try:
        record = train(config, overwrite=True)
    finally:
        shown.removeHandler(handler)
    losses = {h["step"]: h["loss"] for h in record["history"] if "loss" in h}
    result = {
        "tokens_per_second": record["tokens_per_second"],
        "peak_memory_bytes": record["peak_memory_bytes"],
        **_losses(losses),
        "tokens": record["tokens_seen"],
        "wall_s": record["train_runtime_s"],
        "plan": record["plan"],
    }
    free()
    return result


def bench_train(base: str, data: str, work: Path, smoke: bool, harness_first: bool = False, peers: bool = True) -> dict:
    """`harness_first` is ignored: a row after a Liger row inherits Liger's process-wide patches, so the
    order is fixed and the warm-up evens out what the first row used to pay."""
    import shutil

    import torch

    from harness.train.data import build_examples

    cuda = torch.cuda.is_available()
    seed = train_config(base, data, work / "harness-seed", smoke)
    whole = train_config(
        base, data, work / "harness-whole-gpu", smoke, gradient_checkpointing="auto", dequantize_base="auto"
    )
    for config in (seed, whole):
        shutil.rmtree(config.output_dir, ignore_errors=True)
    rows, _, _ = build_examples(seed)
    results: dict = {"steps": seed.training.max_steps, "examples": len(rows), "warm_up_s": None}
    if cuda:
        try:
            started = time.time()
            _warm_up(seed)
            # Two steps of (a), thrown away: the kernels the first training of a process compiles or loads
            # (TRL's chunked LM head in Triton, bitsandbytes' shapes, the paged optimizer) are then ready.
            plain_trl(seed, rows, steps=2)
            results["warm_up_s"] = round(time.time() - started, 1)
        except Exception as exc:
            traceback.print_exc()
            results["warm_up_s"] = f"failed: {type(exc).__name__}: {exc}"
            free()
    if harness_first:
        results["note"] = "--harness-first ignored: (a) must run before any Liger row; a warm-up runs first instead"
    batch, accumulation = seed.training.batch_size, seed.training.gradient_accumulation
    needs_cuda = "skipped: Liger needs CUDA"
    planned = [
        ("plain_trl", peers, lambda: plain_trl(seed, rows)),
        ("plain_trl_liger", peers and cuda, lambda: plain_trl(seed, rows, liger=True)),
        (
            "tuned_trl",
            peers and cuda,
            lambda: plain_trl(seed, rows, liger=True, batch=batch * accumulation, accumulation=1, checkpointing=False),
        ),
        ("harness_seed", True, lambda: harness_train(seed)),
        ("harness_whole_gpu", True, lambda: harness_train(whole)),
    ]
    for name, run, row in planned:
        if not run:
            results[name] = needs_cuda if peers else "skipped: --no-peers"
            continue
        print(f"bench train: {name}", flush=True)
        try:
            results[name] = row()
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            free()
        _save(results)
    results["ratios"] = ratios(results)
    _save(results)
    print(table(results), flush=True)
    return results


def ratios(results: dict) -> dict:
    def figure(row: str, key: str):
        value = results.get(row)
        return value.get(key) if isinstance(value, dict) else None

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    plain_loss = figure("plain_trl", "loss_step_20") or figure("plain_trl", "loss_last")
    losses = {}
    for row in ("plain_trl_liger", "tuned_trl", "harness_seed", "harness_whole_gpu"):
        loss = figure(row, "loss_step_20") or figure(row, "loss_last")
        losses[row] = round((loss - plain_loss) / plain_loss, 5) if loss is not None and plain_loss else None
    return {
        "harness_seed_vs_plain_tokens_per_second": ratio(
            figure("harness_seed", "tokens_per_second"), figure("plain_trl", "tokens_per_second")
        ),
        "harness_seed_vs_plain_peak_memory": ratio(
            figure("harness_seed", "peak_memory_bytes"), figure("plain_trl", "peak_memory_bytes")
        ),
        "harness_whole_gpu_vs_tuned_tokens_per_second": ratio(
            figure("harness_whole_gpu", "tokens_per_second"), figure("tuned_trl", "tokens_per_second")
        ),
        "loss_relative_difference_vs_plain": losses,
    }


def table(results: dict) -> str:
    lines = ["| row | tokens/s | peak memory | loss step 20 | loss last |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in ("plain_trl", "plain_trl_liger", "tuned_trl", "harness_seed", "harness_whole_gpu"):
        row = results.get(name)
        if not isinstance(row, dict) or "error" in row:
            lines.append(f"| {name} | {row.get('error') if isinstance(row, dict) else row} | | | |")
            continue
        memory = f"{row['peak_memory_bytes'] / 2**30:.2f} GiB" if row.get("peak_memory_bytes") else "-"
        lines.append(
            f"| {name} | {row['tokens_per_second']:,.0f} | {memory} | {_fmt(row.get('loss_step_20'))} | "
            f"{_fmt(row.get('loss_last'))} |"
        )
    r = results.get("ratios", {})
    lines += [
        "",
        f"(d)/(a) tokens/s: {r.get('harness_seed_vs_plain_tokens_per_second')}   "
        f"(d)/(a) peak memory: {r.get('harness_seed_vs_plain_peak_memory')}   "
        f"(e)/(c) tokens/s: {r.get('harness_whole_gpu_vs_tuned_tokens_per_second')}",
        f"loss vs (a), relative: {r.get('loss_relative_difference_vs_plain')}",
    ]
    return "\n".join(lines)


def _warm_up(config) -> None:
    """CUDA context, cuBLAS, bitsandbytes' 4-bit and 8-bit kernels, attention, and the Triton kernels Liger
    compiles, on the bench's shapes, without loading the model and without patching transformers."""
    import bitsandbytes as bnb
    import torch
    import torch.nn.functional as F
    from transformers import AutoConfig

    from harness.model.loading import resolve_model_ref
    from harness.runtime.env import liger_available

    shape = AutoConfig.from_pretrained(resolve_model_ref(config.base))
    hidden, inter, heads = shape.hidden_size, shape.intermediate_size, shape.num_attention_heads
    tokens = 2048
    layer = bnb.nn.Linear4bit(hidden, hidden, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4").cuda()
    lora = torch.nn.Linear(hidden, 16, bias=False, device="cuda")
    optimizer = bnb.optim.PagedAdamW8bit(lora.parameters(), lr=1e-4)
    x = torch.randn(1, tokens, hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        q = layer(x).view(1, tokens, heads, hidden // heads).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, q, q, is_causal=True)
        loss = attended.float().pow(2).mean() + lora(x).float().pow(2).mean()
    loss.backward()
    optimizer.step()
    if liger_available():
        from liger_kernel.transformers.functional import liger_rms_norm, liger_swiglu
        from liger_kernel.transformers.rope import liger_rotary_pos_emb

        def tensor(*size, dtype):
            return torch.randn(*size, device="cuda", dtype=dtype, requires_grad=True) * 1  # not a leaf

        for dtype in (torch.float32, torch.bfloat16):
            head = hidden // heads
            q_rot, k_rot = liger_rotary_pos_emb(
                tensor(1, heads, tokens, head, dtype=dtype),
                tensor(1, heads, tokens, head, dtype=dtype),
                tensor(1, tokens, head, dtype=dtype),
                tensor(1, tokens, head, dtype=dtype),
            )
            out = (
                liger_rms_norm(tensor(1, tokens, hidden, dtype=dtype), tensor(hidden, dtype=dtype), 1e-6).sum()
                + liger_swiglu(tensor(1, tokens, inter, dtype=dtype), tensor(1, tokens, inter, dtype=dtype)).sum()
                + q_rot.sum()
                + k_rot.sum()
            )
            out.float().backward()
    torch.cuda.synchronize()
    del layer, lora, optimizer, x
    free()


def _refuse_liger_patches() -> None:
    from transformers.models.llama import modeling_llama

    if "liger" in getattr(modeling_llama.apply_rotary_pos_emb, "__module__", ""):
        raise RuntimeError("Liger already patched transformers' Llama in this process; run this row first")


def _losses(by_step: dict[int, float]) -> dict:
    return {"loss_step_20": by_step.get(20), "loss_last": by_step[max(by_step)] if by_step else None}


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _save(results: dict) -> None:
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench-train.json").write_text(
            json.dumps({"train": results, "partial": True}, indent=2, default=str)
        )
