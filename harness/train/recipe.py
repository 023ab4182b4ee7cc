"""`harness train`: QLoRA supervised fine-tuning, read top to bottom as a recipe.

load the base (4-bit) → wrap with LoRA → build prompt/response examples → TRL's SFTTrainer
runs the loop → save the adapter, tokenizer and a train record. TRL does the loop; this file
does the wiring, visibly and in order.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

from harness import __version__
from harness.config import TrainConfig
from harness.data.prompts import chat_messages, load_template
from harness.data.readers import load_dataset, split_validation
from harness.errors import ConfigError, HarnessError, ModelError
from harness.model.families import check_base, packing_mismatch
from harness.model.loading import base_signature, linear_module_names, load_base, load_tokenizer, resolve_model_ref
from harness.runtime.console import keep_log_in
from harness.runtime.distributed import Dist
from harness.runtime.env import detect, free_cuda_memory, peak_memory_bytes, release_cuda_memory, torch_dtype
from harness.runtime.files import atomic_write_json
from harness.train.checkpoints import check_output
from harness.train.checkpoints import last_checkpoint as _last_checkpoint
from harness.train.plan import Plan, fit_to_memory, plan_training

RECORD_FILE = "train_record.json"


def build_examples(config: TrainConfig, tokenizer=None) -> tuple[list[dict], list[dict], dict]:
    """Dataset → TRL rows ({prompt, completion} or {text}), split into train and validation."""
    d = config.data
    dataset = load_dataset(d.path, d.format, d.split, d.fields, d.limit, d.seed)
    template = load_template(d.template, d.prompt, d.response, where="data.template")
    if template.response is None and d.loss_on == "response":
        raise ConfigError(f"data.loss_on: template '{d.template}' has no response part; set data.loss_on: all")
    if d.validation_split:
        train_ex = dataset.examples
        validation = load_dataset(d.path, d.format, d.validation_split, d.fields, None, d.seed).examples
    else:
        train_ex, validation = split_validation(dataset.examples, d.validation_fraction, d.seed)

    def row(example: dict) -> dict:
        where = f"{d.path} example '{example.get('id', '?')}'"
        prompt = template.render_prompt(example, where)
        response = template.render_response(example, where)
        if response is None:
            return {"text": prompt}
        if d.chat:
            return {"prompt": chat_messages(prompt), "completion": [{"role": "assistant", "content": response}]}
        return {"prompt": prompt, "completion": response}

    info = {
        "path": d.path,
        "file": dataset.path,
        "format": dataset.format,
        "sha256": dataset.sha256,
        "examples": len(train_ex),
        "validation_examples": len(validation),
        "template": d.template,
    }
    return [row(e) for e in train_ex], [row(e) for e in validation], info


def check_target_modules(config: TrainConfig, model) -> None:
    wanted = config.lora.target_modules
    if wanted == "all-linear" or model is None:
        return
    present = linear_module_names(model)
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ConfigError(
            f"lora.target_modules: '{missing[0]}' is not a linear module of {config.base}; "
            f"choose from {', '.join(sorted(present - {'lm_head'}))} or 'all-linear'"
        )


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False, log=print) -> dict:
    out = Path(config.output_dir)
    # Under `accelerate launch` every rank runs this recipe (the Trainer does DDP); rank 0 alone
    # clears old output and saves the adapter and the record.
    dist = Dist.current()
    if dist.main:
        check_output(out, resume, overwrite, RECORD_FILE)
    dist.barrier()
    keep_log_in(out / (f"train-rank{dist.rank}.log" if dist.active else "train.log"))
    if not dist.main:
        log = _quiet
    env = detect()
    plan_training(config, env, dist.world)  # a setting this machine cannot honour fails before anything loads
    _check_base(config)

    # 1. data, before the model: a bad dataset should fail in a second, not after a load
    train_rows, val_rows, data_info = build_examples(config)
    log(
        f"harness train: {data_info['examples']} training and {data_info['validation_examples']} "
        f"validation examples from {config.data.path}"
    )

    # 2. the base, quantized (target modules are checked on the weightless module tree first, so a
    #    misspelt name fails before the weights load)
    check_target_modules(config, _skeleton(config.base))
    base = load_base(config.base, config.quantization, env, local_rank=dist.local_rank)  # each rank its own copy
    check_target_modules(config, base.model)

    # 3. the plan: micro-batch, padding-free batches (with varlen attention on CUDA), Liger, and on CUDA
    #    recomputation and a dequantized base from the memory the loaded base leaves free. The clock (tokens/s) runs from here: what plain
    #    TRL does inside SFTTrainer (LoRA wrapping) and harness's own preparation count, the load does not.
    started = time.time()
    mismatch = ""
    if config.training.padding_free is not False or config.data.packing:
        mismatch = packing_mismatch(base.model, base.tokenizer.pad_token_id)
    plan = plan_training(
        config, env, dist.world, attention=base.model.config._attn_implementation, packing_mismatch=mismatch
    )
    if env.device == "cuda":
        _fit_to_memory(plan, config, base, train_rows, dist.local_rank)
    attention = _use_varlen_attention(plan, base.model)
    log(f"harness train: {plan.describe()}")

    # 4. LoRA on the (possibly dequantized) base
    model = _wrap_with_lora(config, base.model, plan)

    # 5. the loop (TRL), with an out-of-memory back-off that keeps the global batch
    if overwrite and not resume and dist.main:
        _clear_previous_run(out)
    dist.barrier()
    trainer = None
    while True:
        trainer = _trainer(config, plan, model, base.tokenizer, train_rows, val_rows, out, tensorboard=dist.main)
        try:
            trainer.train(resume_from_checkpoint=_last_checkpoint(out, log) if resume else None)
            break
        except Exception as exc:  # torch.OutOfMemoryError only exists on recent torch
            if "out of memory" not in str(exc).lower() or env.device != "cuda" or plan.batch_size == 1:
                raise
            release_cuda_memory()
            plan.batch_size //= 2
            plan.gradient_accumulation *= 2
            resume = _last_checkpoint(out) is not None
            log(
                f"harness train: CUDA out of memory; retrying with micro-batch {plan.batch_size} × "
                f"accumulation {plan.gradient_accumulation} (same global batch)"
            )
    runtime = time.time() - started
    _refuse_non_finite(trainer, config, out)
    if attention is not None:  # the probe, like a reload, runs the base's own attention
        base.model.set_attn_implementation(attention)

    # 6. save the adapter, tokenizer and the record of how it was made (rank 0; the ranks' weights are equal)
    state = trainer.state
    probe = probe_logits(model, base.tokenizer, train_rows[0])
    if not dist.main:
        dist.barrier()
        return {}
    model.save_pretrained(out)
    base.tokenizer.save_pretrained(out)
    tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    record = {
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
        "peak_memory_bytes": peak_memory_bytes(env.device),
        "probe": probe,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if dist.active:
        record["world_size"] = dist.world
    atomic_write_json(out / RECORD_FILE, record)
    dist.barrier()
    return record


def _quiet(*_args, **_kwargs) -> None:
    pass


def _check_base(config: TrainConfig) -> None:
    """Refuse, before the data or the weights load, a base this recipe cannot train correctly."""
    try:
        path = resolve_model_ref(config.base)
        check_base(config.base, path)
    except ModelError as exc:  # name the config field, as every other config error does
        raise ModelError(f"base: {exc}") from None
    if config.data.chat and not getattr(load_tokenizer(config.base, path), "chat_template", None):
        raise ConfigError(
            f"data.chat: the tokenizer of {config.base} has no chat template; set data.chat: false "
            f"(the data.template then shapes the text)"
        )


def _refuse_non_finite(trainer, config: TrainConfig, out: Path) -> None:
    """A run whose weights went NaN or infinite saves no adapter: its numbers would be meaningless."""
    from harness.train.progress import StopOnNonFinite

    watch = next(c for c in trainer.callback_handler.callbacks if isinstance(c, StopOnNonFinite))
    if watch.diverged_at is None:
        return
    last = _last_checkpoint(out)
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
    raise HarnessError(
        f"training.learning_rate: the LoRA weights became NaN or infinite at step {watch.diverged_at}; no adapter "
        f"was saved and {kept}; lower training.learning_rate (now {config.training.learning_rate:g}) or "
        f"training.max_grad_norm, or check the data"
    )


def _clear_previous_run(out: Path) -> None:
    """--overwrite: the old run's checkpoints and curves would be mixed into the new run's rotation or
    resumed later, so they go; but only here, once the data, the base and the plan have passed their
    checks, and the old adapter itself stays until the new one is saved over it."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)


def _skeleton(ref: str):
    """The base's module tree on the meta device (no weights); None where that cannot be built."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        path = resolve_model_ref(ref)
    except ModelError as exc:  # name the config field, as every other config error does
        raise ModelError(f"base: {exc}") from None
    try:
        model_config = AutoConfig.from_pretrained(path)
        with init_empty_weights():
            return AutoModelForCausalLM.from_config(model_config)
    except Exception:
        return None


def _fit_to_memory(plan: Plan, config: TrainConfig, base, train_rows: list[dict], local_rank: int) -> None:
    """Measure what fit_to_memory needs: free memory beside the loaded 4-bit base, what its dequantized
    weights would take, and the training rows' token lengths."""
    from harness.model.dequantize import dequantized_bytes

    model_config = base.model.config.get_text_config()
    lengths = row_token_lengths(train_rows, base.tokenizer, config.data.max_length)
    four_bit = config.quantization.mode in ("nf4", "fp4")
    weights = dequantized_bytes(base.model, torch_dtype(plan.compute_dtype)) if four_bit else 0
    fit_to_memory(
        plan,
        config,
        free_bytes=free_cuda_memory(local_rank),
        dequantized_bytes=weights,
        lengths=lengths,
        hidden_size=model_config.hidden_size,
        intermediate_size=model_config.intermediate_size,
        num_layers=model_config.num_hidden_layers,
    )


def _use_varlen_attention(plan: Plan, model) -> str | None:
    """Switch to varlen attention where the plan says so; returns the implementation to restore."""
    if not plan.varlen_attention:
        return None
    from harness.engine.varlen_attention import use_varlen_attention

    try:
        return use_varlen_attention(model)
    except Exception as exc:
        plan.varlen_attention = False
        plan.why["attention"] = f"varlen attention off: {type(exc).__name__}: {exc}"
        return None


def row_token_lengths(rows: list[dict], tokenizer, max_length: int) -> list[int]:
    """Tokens per training row as TRL will see them, give or take the chat template's and EOS's few."""
    texts = []
    for row in rows:
        if "text" in row:
            texts.append(row["text"])
        elif isinstance(row["prompt"], str):
            texts.append(row["prompt"] + row["completion"])
        else:  # chat messages: their contents stand in for the rendered template
            texts.append("\n".join(m["content"] for m in row["prompt"] + row["completion"]))
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"] if texts else []
    return [min(len(x) + 1, max_length) for x in ids]


def _wrap_with_lora(config: TrainConfig, model, plan: Plan):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    if config.quantization.mode != "none":
        # Freezes the base and enables input grads so checkpointing works through frozen 4-bit layers.
        keep = _bf16_frozen(model) if plan.compute_dtype == "bf16" else []
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan.gradient_checkpointing)
        # peft also upcasts every 16-bit weight to fp32, which fp16 needs for its range. A bf16 weight holds
        # the same values in fp32, so in bf16 the upcast buys nothing and costs a lot: the embedding and LM
        # head double in size and the residual stream turns fp32, so each layer's checkpoint doubles (1.8 GB
        # at 3,500 tokens on a 7B) and every linear first casts its input. Evaluation runs these weights in
        # bf16 as well, so the adapter also trains on the numbers it is evaluated with.
        for param in keep:
            param.data = param.data.to(torch.bfloat16)
    if plan.dequantize_base:
        # After the preparation above, which would upcast the dequantized weights to fp32 as well.
        from harness.model.dequantize import dequantize_linear4bit

        dequantize_linear4bit(model, torch_dtype(plan.compute_dtype))
    lora = config.lora
    # LoRA's A matrices start random: seeded here (the Trainer seeds only later), so the same config and
    # seed give the same run in any process.
    set_seed(config.training.seed)
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias=lora.bias,
        target_modules=lora.target_modules,
        rank_pattern=dict(lora.rank_pattern),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def _bf16_frozen(model) -> list:
    """The base's bf16 weights that peft's preparation would upcast (not the 4-bit ones)."""
    import torch

    return [p for p in model.parameters() if p.dtype == torch.bfloat16 and type(p).__name__ != "Params4bit"]


def _trainer(
    config: TrainConfig, plan: Plan, model, tokenizer, train_rows, val_rows, out: Path, tensorboard: bool = True
):
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    t, d = config.training, config.data
    has_val = bool(val_rows)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=plan.optimizer,
        gradient_checkpointing=plan.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if plan.gradient_checkpointing else None,
        bf16=plan.compute_dtype == "bf16",
        fp16=plan.compute_dtype == "fp16",
        use_cpu=plan.device == "cpu",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy=("steps" if t.eval_steps else "epoch") if has_val else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        # Padding-free rows hold no padding, so all input tokens are the non-padding ones (counting them as
        # `input_ids != pad_token_id` would miss EOS tokens where the pad token is EOS).
        include_num_input_tokens_seen="all" if plan.padding_free else "non_padding",
        max_length=d.max_length,
        packing=d.packing,
        completion_only_loss=d.loss_on == "response",
        dataset_num_proc=None,
        use_liger_kernel=plan.liger,
        # Every LoRA weight takes part in every forward; left unset, the Trainer asks DDP to search a
        # PeftModel's autograd graph for unused parameters after each backward.
        ddp_find_unused_parameters=False,
        **_sampling_argument(SFTConfig, t.group_by_length),
    )
    # An explicit writer rather than TENSORBOARD_LOGGING_DIR, which would leak into the whole process.
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    with warnings.catch_warnings():
        # TRL deprecates `use_liger_kernel` in favour of hub kernels, which an offline machine cannot fetch;
        # harness asks for Liger on purpose (training.liger), so the notice would only confuse.
        warnings.filterwarnings("ignore", message="`use_liger_kernel=True` is deprecated", category=FutureWarning)
        trainer = SFTTrainer(
            model=model,
            args=args,
            processing_class=tokenizer,
            data_collator=_collator(plan, tokenizer, args),
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(val_rows) if has_val else None,
        )
    if len(trainer.train_dataset) == 0:  # TRL drops rows whose labels are all masked
        raise ConfigError(
            f"data.max_length: {d.max_length} tokens leave no training example a token to learn from "
            f"(the prompt fills them); raise data.max_length or set data.loss_on: all"
        )
    if tensorboard:  # made only once there is something to train on
        trainer.add_callback(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(out / "tensorboard"))))
    from harness.train.progress import StopOnNonFinite, replace_progress_bar

    replace_progress_bar(trainer)
    trainer.add_callback(StopOnNonFinite(model))
    # TRL casts a quantized model's LoRA weights to bf16, but peft upcasts them to fp32 when an adapter is
    # loaded (reload, --resume), so the trained adapter would compute differently from the reloaded one and a
    # resumed run would diverge from an uninterrupted one. Keep the trainable weights in fp32 throughout.
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
    return trainer


def _collator(plan: Plan, tokenizer, args):
    """TRL's own padding-free collator, or None for TRL's default (padded) one.

    Not `SFTConfig(padding_free=True)`: without packing, TRL 1.16 then refuses a `max_length` (it would not
    truncate), so the rows would have to be tokenized and truncated outside TRL. This way TRL prepares the
    dataset exactly as in a padded run (tokenize, truncate to max_length, drop rows left without labels)
    and only the batching differs: each micro-batch becomes one row of concatenated sequences, with position
    ids restarting at every sequence and no attention mask, from which transformers builds the
    block-diagonal causal mask (a sequence never sees its neighbours)."""
    if not plan.padding_free:
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        pad_token_id=tokenizer.pad_token_id, padding_free=True, pad_to_multiple_of=args.pad_to_multiple_of
    )


def _sampling_argument(config_cls, group_by_length: bool) -> dict:
    # transformers 5.x replaced `group_by_length` with `train_sampling_strategy` part-way through.
    if "train_sampling_strategy" in config_cls.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}


def history_from_logs(log_history: list[dict]) -> list[dict]:
    """Trainer logs → one entry per step with `loss`, and `eval_loss` where evaluated."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        row = by_step.setdefault(step, {"step": step})
        for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
            if key in entry:
                row[key] = entry[key]
    return [by_step[s] for s in sorted(by_step) if "loss" in by_step[s] or "eval_loss" in by_step[s]]


def probe_logits(model, tokenizer, row: dict, top: int = 10) -> dict:
    """Last-position logits on one training prompt, so a reload can be checked against them."""
    import torch

    text = row.get("text") or (row["prompt"] if isinstance(row.get("prompt"), str) else json.dumps(row["prompt"]))
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[:, -256:]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids.to(model.device)).logits[0, -1].float().cpu()
    if was_training:
        model.train()
    values, indices = logits.topk(min(top, logits.numel()))
    return {
        "text": text,
        "n_tokens": int(ids.shape[1]),
        "top_token_ids": indices.tolist(),
        "top_logits": [round(v, 6) for v in values.tolist()],
    }
