"""`training.batch_size: find`: the largest micro-batch that fits, found by running real training steps.

Micro-batches of 1, 2, 4, … of the longest training examples each take one step (forward, backward and
optimizer step, as the Trainer runs them) on the LoRA-wrapped model until one runs out of GPU memory or
the global batch is reached; the largest that fit becomes the micro-batch, and gradient accumulation
keeps the global batch. The LoRA weights and the model's mode are put back afterwards and the probe's
optimizer is dropped, so training starts as it would have without the probe."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from harness.config import TrainConfig
from harness.errors import ConfigError, first_line
from harness.runtime.distributed import Dist
from harness.runtime.env import release_cuda_memory
from harness.train.memory import resident_bytes
from harness.train.plan import Plan
from harness.train.trainer import build_trainer

logger = logging.getLogger(__name__)


def find_micro_batch(
    config: TrainConfig, plan: Plan, model, tokenizer, train_rows: list[dict], dist: Dist, build=build_trainer
) -> None:
    """Settle the plan's micro-batch and accumulation by probing (in place); every rank takes the
    smallest micro-batch any rank found, so that all of them step together. `build`: the trainer
    builder training will use (SFT, or sequence-to-sequence on an encoder-decoder)."""
    share = plan.batch_size * plan.gradient_accumulation  # this process's examples per optimizer step
    probes = probe_steps(config, plan, model, tokenizer, train_rows, candidate_sizes(share), build)
    fitted = [p["micro_batch"] for p in probes if p["fit"]]
    chosen = min(dist.all_gather(fitted[-1] if fitted else 0))
    if chosen == 0:
        fix = "lower data.max_length" if plan.gradient_checkpointing else "set training.gradient_checkpointing: true"
        raise ConfigError(
            f"training.batch_size: find: a micro-batch of one of the longest examples ran out of GPU memory; {fix}"
        )
    plan.batch_size, plan.gradient_accumulation = chosen, share // chosen
    cuda = plan.device == "cuda"
    plan.batch_probe = {
        "global_batch": plan.global_batch,
        "chosen": chosen,
        "bound": _bound(probes, cuda),
        "probes": probes,
    }
    plan.why["micro_batch"] = probe_reason(probes, chosen, cuda)


def _bound(probes: list[dict], cuda: bool) -> str:
    if not cuda:
        return "the global batch (no out-of-memory to find on this device)"
    return "out of GPU memory" if not probes[-1]["fit"] else "the global batch (every size fit)"


def candidate_sizes(share: int) -> list[int]:
    """1, 2, 4, … while they divide `share`, then `share` itself: each leaves a whole accumulation."""
    sizes, size = [], 1
    while size < share and share % size == 0:
        sizes.append(size)
        size *= 2
    return [*sizes, share]


def probe_reason(probes: list[dict], chosen: int, cuda: bool) -> str:
    tried = ",".join(f"{p['micro_batch']}{'' if p['fit'] else '(OOM)'}" for p in probes)
    bound = "" if cuda else " up to the global batch: no out-of-memory to find on this device"
    own = max((p["micro_batch"] for p in probes if p["fit"]), default=0)
    agreed = "" if own == chosen else f"; {own} fit here but {chosen} on another process, so all take {chosen}"
    return f"micro-batch {chosen} found by probing {tried}{bound}{agreed}"


def probe_steps(
    config: TrainConfig, plan: Plan, model, tokenizer, rows: list[dict], sizes: list[int], build=build_trainer
) -> list[dict]:
    """One training step per micro-batch size, largest rows first, until one runs out of memory. All the
    rows are prepared as training prepares them (tokenized, truncated, those left without a target dropped),
    so that the longest are those training will see."""
    with tempfile.TemporaryDirectory() as tmp:  # the probe's Trainer never saves, but it needs a directory
        trainer = build(config, plan, model, tokenizer, (rows, []), Path(tmp), report=False)
        features = _longest_first(trainer.train_dataset, sizes[-1], trainer.args.remove_unused_columns)
        restore = _snapshot(model)
        try:
            _prepare_as_train_does(trainer)
            # Probe steps on one process only: the metrics the loss computation gathers across processes
            # would wait on a rank whose step ran out of memory.
            trainer.accelerator.gather_for_metrics = lambda value, **_: value
            trainer.current_gradient_accumulation_steps = 1
            optimizer = trainer.create_optimizer()
            probes = []
            for size in sizes:
                # Fewer examples than the micro-batch: all of them are the largest micro-step training will see.
                probes.append(_step(trainer, optimizer, features[:size], size))
                logger.info("harness train: batch probe: micro-batch %d %s", size, _outcome(probes[-1]))
                if not probes[-1]["fit"]:
                    break
        finally:
            trainer.optimizer = optimizer = None
            restore()
            del trainer
            _release(plan.device)
    return probes


def _step(trainer, optimizer, features: list[dict], size: int) -> dict:
    import torch

    device = trainer.args.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started, error = time.perf_counter(), None
    try:
        with trainer.accelerator.autocast():  # as the prepared model's forward runs in training
            trainer.training_step(trainer.model, trainer.data_collator(features))
        optimizer.step()
        if cuda:
            torch.cuda.synchronize(device)
    except Exception as exc:  # torch.OutOfMemoryError only exists on recent torch
        if not cuda or "out of memory" not in str(exc).lower():
            raise
        error = first_line(exc)
    seconds = time.perf_counter() - started
    optimizer.zero_grad(set_to_none=True)
    probe = {"micro_batch": size, "examples": len(features), "fit": error is None}
    if cuda:
        probe["peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
        release_cuda_memory()  # the failed step's tensors are unreachable only now, outside the except block
    else:
        probe["rss_bytes"] = resident_bytes()
    if error is None:
        probe["step_s"] = round(seconds, 3)
    else:
        probe["error"] = error
    return probe


def _outcome(probe: dict) -> str:
    if not probe["fit"]:
        return "ran out of memory"
    memory = f", peak {probe['peak_bytes'] / 2**30:.2f} GiB allocated" if "peak_bytes" in probe else ""
    return f"fit: {probe['step_s']:.2f} s a step{memory}"


def _longest_first(dataset, n: int, remove_unused_columns: bool) -> list[dict]:
    # The columns the Trainer's dataloader passes to the collator: TRL's signature columns
    # (SFTTrainer._set_signature_columns_if_needed), or all of them where the Trainer keeps every column
    # (the sequence-to-sequence rows hold the model's inputs and labels only).
    signature = ("input_ids", "labels", "seq_lengths")
    keep = [c for c in dataset.column_names if c in signature or not remove_unused_columns]
    # An encoder-decoder's labels are its target, as long again as its own; a decoder-only row's add nothing.
    targets = dataset["labels"] if "labels" in dataset.column_names else [[]] * len(dataset)
    lengths = [len(ids) + len(t) for ids, t in zip(dataset["input_ids"], targets)]
    longest = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:n]
    return [{c: dataset[i][c] for c in keep} for i in longest]


def _prepare_as_train_does(trainer) -> None:
    """What `Trainer.train` does to the model before its first step and the probe's memory depends on:
    Liger's kernels and activation recomputation (both again by the training Trainer, which they survive)."""
    args = trainer.args
    if args.use_liger_kernel:
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(trainer.model, args.liger_kernel_config)
    # transformers renamed gradient checkpointing to activation checkpointing; harness's range holds both.
    on = getattr(args, "activation_checkpointing", None)
    if on is None:
        on, kwargs = args.gradient_checkpointing, args.gradient_checkpointing_kwargs
    else:
        kwargs = args.activation_checkpointing_kwargs
    if not on:
        return
    kwargs = dict(kwargs or {}) or None
    if hasattr(trainer.model, "activation_checkpointing_enable"):
        trainer.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _snapshot(model):
    """A function that puts the trainable weights and the train/eval mode back. (The random state needs
    no keeping: the training Trainer seeds every generator from training.seed when it is built.)"""
    import torch

    weights = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}
    training = model.training

    def restore() -> None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in weights:
                    p.copy_(weights[name])
                    p.grad = None
        model.train(training)

    return restore


def _release(device: str) -> None:
    release_cuda_memory()
    if device == "cuda":
        import torch

        # The run's peak (train record) is training's own, not the probe's, whose peaks are in the probe record.
        torch.cuda.reset_peak_memory_stats()
