"""Training rows: harness train beside plain TRL scripts (seed, Liger, tuned)."""
from __future__ import annotations

import time
from pathlib import Path

from common import SEED_LORA, free, peak


def train_config(base: str, data: str, out: Path, smoke: bool):
    from harness.config import TrainConfig, validate

    steps, batch, accum = (4, 2, 2) if smoke else (20, 4, 4)
    return validate(TrainConfig, {
        "name": "bench", "base": base, "output_dir": str(out),
        "quantization": {"mode": "nf4", "double_quant": True, "compute_dtype": "auto"},
        "lora": SEED_LORA,
        "data": {"path": data, "template": "qa-ko", "validation_fraction": 0, "max_length": 512,
                 "limit": steps * batch * accum},
        "training": {"max_steps": steps, "batch_size": batch, "gradient_accumulation": accum,
                     "learning_rate": 2e-4, "warmup": 0, "logging_steps": 1, "save_steps": 10_000,
                     "optimizer": "adamw_torch" if smoke else "paged_adamw_8bit",
                     "gradient_checkpointing": not smoke, "seed": 42},
    }, "benchmark")


def plain_trl(config, rows) -> dict:
    """What a careful user writes by hand with transformers + peft + TRL (the seed settings)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from harness.models import resolve_model_ref

    path = resolve_model_ref(config.base)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, device_map={"": 0} if cuda else None,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype))
    t = config.training
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(t.gradient_checkpointing))
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=SEED_LORA["target_modules"],
                      task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(Path(config.output_dir).with_name("plain-trl")), max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate, optim=t.optimizer, gradient_checkpointing=bool(t.gradient_checkpointing),
        bf16=cuda, use_cpu=not cuda, logging_steps=1, save_strategy="no", report_to="none", seed=t.seed,
        max_length=512, include_num_input_tokens_seen="non_padding", lr_scheduler_type=t.scheduler,
        max_grad_norm=t.max_grad_norm,
    )
    free()
    started = time.time()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora)
    trainer.train()
    wall = time.time() - started
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens = int(trainer.state.num_input_tokens_seen)
    result = {"tokens_per_second": tokens / wall, "peak_memory_bytes": peak(), "loss_last": losses[-1],
              "tokens": tokens, "wall_s": wall}
    del trainer, model
    free()
    return result


def bench_train(base: str, data: str, work: Path, smoke: bool, harness_first: bool = False, peers: bool = True) -> dict:
    import shutil

    from harness.train import build_examples, train

    config = train_config(base, data, work / "harness-adapter", smoke)
    shutil.rmtree(config.output_dir, ignore_errors=True)
    rows, _, _ = build_examples(config)
    # Whichever runs first also pays for CUDA/cuBLAS warm-up: --harness-first swaps the order.
    peer = None
    if peers and not harness_first:
        peer = plain_trl(config, rows)
        free()
    record = train(config, overwrite=True, log=lambda m: print(m, flush=True))
    if peers and harness_first:
        free()
        peer = plain_trl(config, rows)
    losses = [h["loss"] for h in record["history"] if "loss" in h]
    ours = {"tokens_per_second": record["tokens_per_second"], "peak_memory_bytes": record["peak_memory_bytes"],
            "loss_last": losses[-1], "tokens": record["tokens_seen"], "wall_s": record["train_runtime_s"]}
    free()
    return {"plain_trl": peer, "harness_train": ours, "adapter": config.output_dir, "harness_first": harness_first}
