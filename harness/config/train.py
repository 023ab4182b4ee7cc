"""`harness train` config: every knob the seed tutorials tune, with a default that works."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.config.data import ReaderSettings
from harness.config.loader import MAX_SEED, Strict, check_name, drop_defaults
from harness.config.model import Quantization


class LoraSettings(Strict):
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: float = Field(32, gt=0, description="LoRA scaling numerator: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="which biases train (peft's `bias`)")
    target_modules: Literal["all-linear"] | list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="linear module names (suffix match, as peft does), or `all-linear`; "
        "a name the model lacks is an error",
    )
    rank_pattern: dict[str, int] = Field(
        default_factory=dict,
        description="per-module ranks, e.g. `{v_proj: 32}`: keys are peft rank_pattern regexes or suffixes",
    )

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("expected at least one module name or 'all-linear'")
        return value

    @field_validator("rank_pattern")
    @classmethod
    def _positive_ranks(cls, value):
        for key, rank in value.items():
            if rank <= 0:
                raise ValueError(f"rank for '{key}' must be > 0")
        return value


def _token_limit(description: str) -> Any:
    """An optional length in tokens (None: another field's value)."""
    return Field(None, gt=0, le=2**20, description=description)


class DataSettings(ReaderSettings):
    path: str = Field(
        "builtin:korquad_sample",
        description="a JSON, JSONL, CSV, TSV or parquet file, a `save_to_disk` folder, a hub dataset id, or `builtin:NAME` "
        "(a dataset shipped in harness/data/assets)",
    )
    split: str = Field("train", description="the split to train on (hub datasets, `save_to_disk` folders)")
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="held out from `split` for eval loss when no `validation_split` is given"
    )
    validation_split: str | None = Field(None, description="a hub split for eval loss instead of a held-out fraction")
    fields: dict[str, str] = Field(
        default_factory=dict, description="template field → dataset column, e.g. `{question: q}`"
    )
    template: str = Field(
        "qa-ko",
        description="a built-in template (`qa-ko`, `qa-en`, `alpaca`, `prompt-response`, `summarize-ko`, "
        "`summarize-en`, `text`) or a YAML file with `prompt:` and `response:`",
    )
    prompt: str | None = Field(None, description="inline jinja2 prompt; overrides the template's")
    response: str | None = Field(None, description="inline jinja2 response; overrides the template's")
    chat: bool = Field(False, description="wrap prompt and response in the model's chat template")
    loss_on: Literal["response", "all"] = Field(
        "response", description="`response`: loss on the answer only; `all`: on prompt and answer"
    )
    max_length: int = Field(512, gt=0, le=2**20, description="longest example in tokens; longer ones are cut")
    max_source_length: int | None = _token_limit(
        "encoder-decoder bases (T5, BART): longest source (the rendered prompt, the encoder's input) in tokens, "
        "longer ones are cut at the end; default: `max_length`"
    )
    max_target_length: int | None = _token_limit(
        "encoder-decoder bases: longest target (the rendered response, the labels) in tokens, longer ones are "
        "cut at the end; default: `max_length`"
    )
    packing: bool = Field(False, description="TRL's packing of examples into full rows (turns padding-free off)")
    limit: int | None = Field(None, gt=0, description="train on this many examples, drawn as `sample` says")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the `limit` sample and the validation split")


# `auto`: harness decides from the hardware and the loaded model, and the plan line says what and why.
AutoSwitch = bool | Literal["auto"]


def _auto(description: str) -> Any:
    return Field("auto", description=description)


class EarlyStopping(Strict):
    patience: int = Field(
        ..., gt=0, le=10_000, description="evaluations in a row without a better eval loss before training stops"
    )
    threshold: float = Field(
        0.0, ge=0, description="how much lower an eval loss must be than the best so far to count as better"
    )


class TrainingSettings(Strict):
    epochs: float = Field(3.0, gt=0, le=10_000, description="passes over the data")
    max_steps: int = Field(-1, le=10**9, description="> 0 overrides epochs")
    batch_size: int | Literal["auto", "find"] = Field(
        "auto",
        description="micro-batch; batch_size × gradient_accumulation is the global batch, kept under "
        "`accelerate launch`. auto: from the hardware, split further where the estimated activations do not "
        "fit; find: the global batch of auto (its micro-batch × gradient_accumulation), split by probing real "
        "training steps of micro-batch 1, 2, 4, … on the longest examples until one runs out of GPU memory "
        "(on CPU: up to the global batch)",
    )
    gradient_accumulation: int = Field(1, gt=0, description="micro-batches per optimizer step")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate")
    scheduler: Literal[
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant",
        "constant_with_warmup",
        "inverse_sqrt",
        "reduce_lr_on_plateau",
        "cosine_with_min_lr",
        "warmup_stable_decay",
    ] = Field("cosine", description="learning-rate schedule (transformers' `lr_scheduler_type`)")
    warmup: float = Field(0.03, ge=0, description="a fraction of the total steps when < 1, a number of steps otherwise")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(0.3, ge=0, description="gradient clipping norm")
    optimizer: Literal[
        "auto",
        "adamw_torch",
        "adamw_torch_fused",
        "adamw_8bit",
        "paged_adamw_8bit",
        "paged_adamw_32bit",
        "adafactor",
        "sgd",
    ] = Field("auto", description="auto: paged 8-bit AdamW on CUDA, AdamW elsewhere (paged optimizers need CUDA)")
    gradient_checkpointing: AutoSwitch = _auto(
        "recompute activations in the backward; auto: on CUDA, off when one micro-step's estimated "
        "activations fit in free GPU memory (off on CPU); `true`: the low-memory mode (the base stays 4-bit)"
    )
    padding_free: AutoSwitch = _auto(
        "concatenate each micro-batch's sequences without padding and run the global batch as one "
        "micro-step (on CUDA with varlen flash attention where torch has it); auto: on unless `data.packing`, "
        "or where packed sequences would see each other on the loaded base (checked on the model: OPT, Bloom)"
    )
    liger: AutoSwitch = _auto(
        "Liger's Triton kernels (RMSNorm, RoPE, SwiGLU); auto: on with CUDA and `liger-kernel` "
        "installed; `true` without them is an error"
    )
    dequantize_base: AutoSwitch = _auto(
        "train against the 4-bit base's weights dequantized once to the compute dtype (same math, "
        "no per-step dequantization, more memory); auto: on CUDA when they fit beside the activations and "
        "`gradient_checkpointing` is not `true`"
    )
    group_by_length: bool = Field(False, description="length-grouped sampling")
    eval_steps: int | None = Field(None, gt=0, description="evaluate every N steps; default: once per epoch")
    logging_steps: int = Field(10, gt=0, description="log the loss every N steps")
    save_steps: int = Field(100, gt=0, description="save a checkpoint every N steps (`--resume` continues from it)")
    save_total_limit: int | None = Field(2, gt=0, description="checkpoints kept (null: all)")
    seed: int = Field(42, ge=0, le=MAX_SEED, description="training seed (initialisation, shuffling, dropout)")
    early_stopping: EarlyStopping | None = Field(
        None,
        description="stop when the eval loss has not improved for `patience` evaluations, e.g. "
        "`{patience: 3, threshold: 0.01}`; needs validation data (null: train to the end)",
    )
    keep: Literal["last", "best"] = Field(
        "last",
        description="the adapter saved: `last`, the weights at the end; `best`, the checkpoint with the lowest "
        "eval loss (a checkpoint is saved at every evaluation; needs validation data)",
    )
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        ["tensorboard"],
        description="where the curves go: `tensorboard` (OUTPUT_DIR/tensorboard), `wandb` (needs `pip install "
        "wandb` and a login); `[]`: nowhere but the train record",
    )

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value):
        if isinstance(value, int) and value <= 0:
            raise ValueError("expected a positive integer, 'auto' or 'find'")
        return value


class TrainConfig(Strict):
    name: str = Field("tiny-ko-qa", description="adapter name; output goes to `adapters/NAME`")
    base: str = Field("tiny:llama-ko", description="hub id, local directory, or a built-in `tiny:` model")
    output_dir: str | None = Field(None, description="where the adapter and record go; default: adapters/<name>")
    quantization: Quantization = Field(default_factory=Quantization, description="how the base is loaded")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="the adapter's shape")
    data: DataSettings = Field(default_factory=DataSettings, description="what to train on and how it is rendered")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="the optimisation")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value):
        return check_name(value, "name")

    @model_validator(mode="after")
    def _resolve_output(self):
        if self.output_dir is None:
            object.__setattr__(self, "output_dir", f"adapters/{self.name}")
        return self


# Training fields added after sweeps were first recorded, at their defaults: left out of what names a
# sweep's shared settings, so a sweep recorded before they existed still resumes.
SELECTION_DEFAULTS = {"early_stopping": None, "keep": "last", "report_to": ["tensorboard"]}


def drop_selection_defaults(section: dict) -> dict:
    """A dumped `training` section without SELECTION_DEFAULTS' fields at their defaults (`drop_defaults`)."""
    return drop_defaults(section, SELECTION_DEFAULTS)
