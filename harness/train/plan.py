"""How `harness train` runs on this machine: micro-batch, accumulation, padding-free batches, Liger
kernels, recomputation and a dequantized base. Decided from the config and the hardware, printed as
one line at the start and kept in the train record, with the reason for each choice."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config import TrainConfig
from harness.errors import ConfigError
from harness.runtime.env import Environment, compute_dtype_name, liger_available, train_batch_size

# transformers 5 builds a block-diagonal causal mask from per-sequence position ids when a batch comes
# without an attention mask (masking_utils.find_packed_sequence_indices), and the flash kernels read the
# sequence boundaries directly: these attentions can serve padding-free rows. Whether the model passes
# position ids on to its mask at all (OPT and Bloom do not) is checked on the loaded model itself
# (families.packing_mismatch).
PACKED_ATTENTION = {"sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"}
# Free memory kept aside for what the estimates leave out: allocator fragmentation, optimizer state,
# the LM head's chunks, CUDA workspaces.
MEMORY_MARGIN = 1.10


@dataclass
class Plan:
    """What environment detection decided; printed at start and kept in the record."""

    device: str
    compute_dtype: str
    batch_size: int
    gradient_accumulation: int
    optimizer: str
    gradient_checkpointing: bool
    world_size: int = 1
    padding_free: bool = False
    varlen_attention: bool = False
    liger: bool = False
    dequantize_base: bool = False
    why: dict[str, str] = field(default_factory=dict)  # topic → reason, in the order decided
    batch_probe: dict | None = None  # `batch_size: find`: the micro-batches tried and the one chosen

    def describe(self) -> str:
        world = f" processes={self.world_size}" if self.world_size > 1 else ""
        reasons = f" ({'; '.join(self.why.values())})" if self.why else ""
        attention = "varlen" if self.varlen_attention else "default"
        return (
            f"device={self.device} compute_dtype={self.compute_dtype} micro_batch={self.batch_size} "
            f"grad_accum={self.gradient_accumulation}{world} global_batch={self.global_batch} "
            f"optimizer={self.optimizer} padding_free={_on(self.padding_free)} attention={attention} "
            f"liger={_on(self.liger)} gradient_checkpointing={_on(self.gradient_checkpointing)} "
            f"dequantize_base={_on(self.dequantize_base)}{reasons}"
        )

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.gradient_accumulation * self.world_size


def plan_training(
    config: TrainConfig, env: Environment, world_size: int = 1, attention: str | None = None, packing_mismatch: str = ""
) -> Plan:
    """Everything that follows from the config and the hardware alone; `fit_to_memory` settles the rest
    once the base is loaded. `attention`: the loaded model's attention implementation (None: not known yet).
    `packing_mismatch`: why packed sequences do not give the padded result on the loaded model
    (`families.packing_mismatch`; "" where they do or it was not checked).

    `training.batch_size × gradient_accumulation` is the global batch, whatever the number of processes:
    with N data-parallel processes the accumulation is divided by N where it divides, otherwise the
    per-process micro-batch is, so one optimizer step sees the same examples as on one process."""
    t = config.training
    cuda = env.device == "cuda"
    optimizer = t.optimizer if t.optimizer != "auto" else ("paged_adamw_8bit" if cuda else "adamw_torch")
    if optimizer.startswith("paged_") and not cuda:
        raise ConfigError(f"training.optimizer: '{optimizer}' needs CUDA; use adamw_torch on {env.device}")
    why: dict[str, str] = {}
    padding_free = _padding_free(config, attention, packing_mismatch, why)
    # find starts from auto's micro-batch: its global batch is kept, and the probe (batch_probe) splits it.
    batch_size = t.batch_size if isinstance(t.batch_size, int) else train_batch_size(env)
    accumulation = t.gradient_accumulation
    if padding_free and accumulation > 1:
        # No compute goes to padding, so nothing is gained by splitting the global batch: one micro-step of
        # the whole batch does the same work with fewer, larger matmuls. The loss is normalised by the
        # batch's token count either way, so the optimizer step is the same.
        why["micro_batch"] = f"padding-free: the global batch of {batch_size * accumulation} runs as one micro-step"
        batch_size, accumulation = batch_size * accumulation, 1
    if world_size > 1:
        if accumulation % world_size == 0:
            accumulation //= world_size
        elif batch_size % world_size == 0:
            batch_size //= world_size
        else:
            raise ConfigError(
                f"training.batch_size {batch_size} × gradient_accumulation {accumulation}: the global batch of "
                f"{batch_size * accumulation} cannot be shared by {world_size} processes; make batch_size or "
                f"gradient_accumulation a multiple of {world_size}"
            )
    return Plan(
        device=env.device,
        compute_dtype=compute_dtype_name(env, config.quantization.compute_dtype),
        batch_size=batch_size,
        gradient_accumulation=accumulation,
        optimizer=optimizer,
        # auto on CUDA is provisional: fit_to_memory turns it off where the activations fit.
        gradient_checkpointing=t.gradient_checkpointing if t.gradient_checkpointing != "auto" else cuda,
        world_size=world_size,
        padding_free=padding_free,
        varlen_attention=_varlen_attention(padding_free, attention, env, config, why),
        liger=_liger(config, env),
        dequantize_base=_dequantize_base(config),
        why=why,
    )


def fit_to_memory(
    plan: Plan,
    config: TrainConfig,
    *,
    free_bytes: int,
    dequantized_bytes: int,
    lengths: list[int],
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
) -> None:
    """Settle `gradient_checkpointing: auto` and `dequantize_base: auto` from free GPU memory (in place), and
    split the micro-step where even recomputation's activations would not fit.

    Recomputation costs about a third more compute per step; dequantizing saves less, so the memory goes
    to the activations first. An explicit `gradient_checkpointing: true` is the low-memory mode: the base
    then stays 4-bit unless `dequantize_base: true` says otherwise. The micro-step stays as large as fits:
    on the H100 bench (7B, 4-bit, recomputation) a micro-step of half the sequences took as long as the
    whole one (benchmarks/RESULTS.md), so a split to save memory halves the speed. The out-of-memory back-off covers an estimate
    too low."""
    t = config.training
    residual = 2 if plan.compute_dtype == "bf16" else 4  # fp16 bases are upcast for training (train.py)
    tokens = micro_step_tokens(lengths, plan.batch_size, plan.padding_free)
    full, checkpointed = activation_bytes(tokens, hidden_size, intermediate_size, num_layers, residual)
    weights = dequantized_bytes if plan.dequantize_base else 0

    def fits(need: int) -> bool:
        return need * MEMORY_MARGIN <= free_bytes

    if t.gradient_checkpointing == "auto":
        plan.gradient_checkpointing = not fits(full + weights)
        verdict = "do not fit" if plan.gradient_checkpointing else "fit"
        plan.why["checkpointing"] = (
            f"checkpointing {_on(plan.gradient_checkpointing)}: ~{_gib(full)} of activations "
            f"for {tokens} tokens {verdict} in {_gib(free_bytes - weights)} free"
        )
    if t.dequantize_base == "auto" and t.gradient_checkpointing is not True and dequantized_bytes:
        activations = checkpointed if plan.gradient_checkpointing else full
        plan.dequantize_base = fits(dequantized_bytes + activations)
        verdict = "fit" if plan.dequantize_base else "do not fit"
        plan.why["dequantize_base"] = (
            f"dequantized base {_on(plan.dequantize_base)}: {_gib(dequantized_bytes)} of "
            f"{plan.compute_dtype} weights beside the activations {verdict} in "
            f"{_gib(free_bytes)} free"
        )
    weights = dequantized_bytes if plan.dequantize_base else 0
    while plan.batch_size > 1 and plan.batch_size % 2 == 0:
        tokens = micro_step_tokens(lengths, plan.batch_size, plan.padding_free)
        full, checkpointed = activation_bytes(tokens, hidden_size, intermediate_size, num_layers, residual)
        if fits(weights + (checkpointed if plan.gradient_checkpointing else full)):
            break
        plan.batch_size //= 2
        plan.gradient_accumulation *= 2
        plan.why["micro_batch"] = (
            f"micro-batch {plan.batch_size} × accumulation {plan.gradient_accumulation}: "
            f"larger micro-steps' activations do not fit in {_gib(free_bytes - weights)} free"
        )


def activation_bytes(
    tokens: int, hidden_size: int, intermediate_size: int, num_layers: int, residual_bytes: int = 4
) -> tuple[int, int]:
    """(without, with recomputation) estimated activation memory of one micro-step of `tokens` tokens.

    An estimate, not a measurement: a decoder layer keeps roughly 20 hidden-sized and 4 intermediate-sized
    16-bit tensors per token for its backward (norms, q/k/v/o and their LoRA inputs, attention output,
    gate/up/activation). With recomputation only each layer's input stays (the residual stream: bf16, or
    fp32 where the base was upcast), plus one layer's full set while it is recomputed."""
    per_layer = 2 * (20 * hidden_size + 4 * intermediate_size)
    full = tokens * per_layer * num_layers
    checkpointed = tokens * (residual_bytes * hidden_size * num_layers + per_layer)
    return full, checkpointed


def micro_step_tokens(lengths: list[int], micro_batch: int, padding_free: bool) -> int:
    """The most tokens one micro-step can hold: its longest rows, end to end or padded to the longest."""
    longest = sorted(lengths, reverse=True)[:micro_batch]
    if not longest:
        return 0
    return sum(longest) if padding_free else micro_batch * longest[0]


def _padding_free(config: TrainConfig, attention: str | None, mismatch: str, why: dict[str, str]) -> bool:
    wanted = config.training.padding_free
    if wanted is True and config.data.packing:
        raise ConfigError(
            "training.padding_free: true and data.packing: true exclude each other (packed rows "
            "hold no padding already); set one of them to false"
        )
    if config.data.packing and mismatch:
        # TRL packs whole sequences into one row with restarting position ids: the same leak.
        raise ConfigError(f"data.packing: true is not exact on {config.base}: {mismatch}; set data.packing: false")
    if wanted is False or config.data.packing:
        return False
    if mismatch:
        if wanted is True:
            raise ConfigError(
                f"training.padding_free: true is not exact on {config.base}: {mismatch}; "
                f"set training.padding_free: false"
            )
        why["padding_free"] = f"padding-free off: {mismatch}"
        return False
    if attention is not None and attention not in PACKED_ATTENTION:
        if wanted is True:
            raise ConfigError(
                f"training.padding_free: true needs an attention implementation that reads packed "
                f"position ids ({', '.join(sorted(PACKED_ATTENTION))}), not '{attention}'; "
                f"set training.padding_free: false"
            )
        why["padding_free"] = f"padding-free off: attention '{attention}' does not read packed position ids"
        return False
    return True


def _varlen_attention(
    padding_free: bool, attention: str | None, env: Environment, config: TrainConfig, why: dict[str, str]
) -> bool:
    # Only in place of sdpa: flash or flex attention already attend within sequences, eager is a choice.
    if not padding_free or attention != "sdpa" or env.device != "cuda":
        return False
    from harness.engine.varlen_attention import unavailable_reason

    reason = unavailable_reason(env.device, compute_dtype_name(env, config.quantization.compute_dtype))
    why["attention"] = (
        f"varlen attention off: {reason}"
        if reason
        else "varlen attention: flash attention within each sequence, not masked sdpa over the row"
    )
    return reason is None


def _liger(config: TrainConfig, env: Environment) -> bool:
    wanted = config.training.liger
    available = env.device == "cuda" and liger_available()
    if wanted is True and not available:
        need = "CUDA" if env.device != "cuda" else "the liger-kernel package (pip install liger-kernel)"
        raise ConfigError(f"training.liger: true needs {need}; set training.liger: auto or false")
    return available if wanted == "auto" else wanted


def _dequantize_base(config: TrainConfig) -> bool:
    wanted = config.training.dequantize_base
    if wanted is True and config.quantization.mode not in ("nf4", "fp4"):
        raise ConfigError(
            f"training.dequantize_base: true needs a 4-bit base, not quantization.mode "
            f"'{config.quantization.mode}'; set quantization.mode: nf4 or dequantize_base: false"
        )
    return wanted is True  # auto is settled by fit_to_memory, on CUDA only


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
