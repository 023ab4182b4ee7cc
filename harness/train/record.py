"""What a training run leaves beside its adapter: `train_record.json`, with the config, the plan, the
data's identity, the loss history, throughput, and the logits of one prompt so a reload can be checked."""

from __future__ import annotations

import json
import time

from harness import __version__
from harness.config import TrainConfig
from harness.model.families import is_encoder_decoder
from harness.model.loading import base_signature
from harness.model.probe import prompt_logits
from harness.runtime.env import Environment, peak_memory_bytes
from harness.train.memory import MEMORY_KEYS
from harness.train.plan import Plan

RECORD_FILE = "train_record.json"


def train_record(
    config: TrainConfig,
    base,
    plan: Plan,
    data_info: dict,
    env: Environment,
    state,
    runtime: float,
    probe: dict,
    memory: dict | None = None,
) -> dict:
    """The record of how the adapter was made, from the finished Trainer's `state`; `memory`: the run's
    peak and what its history's memory series measure (harness.train.memory.memory_summary)."""
    # Non-padding tokens of the inputs: prompt and response, or on an encoder-decoder source and target.
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    return {
        "harness_version": __version__,
        "name": config.name,
        "base_model": config.base,
        "base_model_path": base.path,
        "base_signature": base_signature(base.model),
        "config": config.model_dump(mode="json"),
        "plan": plan.__dict__,
        "data": data_info,
        "environment": env.to_dict(),
        "history": history_from_logs(state.log_history),
        "global_steps": state.global_step,
        "train_runtime_s": round(runtime, 3),
        "tokens_seen": tokens,
        "tokens_per_second": round(tokens / runtime, 2) if runtime > 0 else None,
        "peak_memory_bytes": memory["peak_bytes"] if memory else peak_memory_bytes(env.device),
        "memory": memory,
        "probe": probe,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def history_from_logs(log_history: list[dict]) -> list[dict]:
    """Trainer logs → one entry per step with `loss`, and `eval_loss` where evaluated, and the memory
    figures (harness.train.memory) where logged."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        row = by_step.setdefault(step, {"step": step})
        for key in ("loss", "eval_loss", "learning_rate", "grad_norm", *MEMORY_KEYS):
            if key in entry:
                row[key] = entry[key]
    return [by_step[s] for s in sorted(by_step) if "loss" in by_step[s] or "eval_loss" in by_step[s]]


def probe_logits(model, tokenizer, row: dict, top: int = 10) -> dict:
    """Last-position logits on one training prompt, so a reload can be checked against them. An
    encoder-decoder reads the prompt as its source and gives the logits of the target's first token
    (its decoder fed the start token alone, kept as `decoder_input_ids`)."""
    text = row.get("text") or (row["prompt"] if isinstance(row.get("prompt"), str) else json.dumps(row["prompt"]))
    extra = {}
    if is_encoder_decoder(model.config):
        from harness.train.seq2seq_trainer import probe_logits as encoder_decoder_probe

        n_tokens, extra["decoder_input_ids"], logits = encoder_decoder_probe(model, tokenizer, text)
    else:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[:, -256:]
        n_tokens, logits = int(ids.shape[1]), prompt_logits(model, ids)[-1]
    values, indices = logits.topk(min(top, logits.numel()))
    return {
        "text": text,
        "n_tokens": n_tokens,
        **extra,
        "top_token_ids": indices.tolist(),
        "top_logits": [round(v, 6) for v in values.tolist()],
    }
