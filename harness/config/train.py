"""`harness train` config: every knob the seed tutorials tune, with a default that works."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from harness.config.loader import MAX_SEED, Strict, check_name
from harness.config.model import Quantization


class LoraSettings(Strict):
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    bias: Literal["none", "all", "lora_only"] = "none"
    # Names of linear modules (suffix match, as peft does) or the string `all-linear`.
    target_modules: Literal["all-linear"] | list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    # Per-module ranks, e.g. {"v_proj": 32}: keys are peft rank_pattern regexes or suffixes.
    rank_pattern: dict[str, int] = Field(default_factory=dict)

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


class DataSettings(Strict):
    # `builtin:NAME` names a dataset shipped in harness/data/assets; otherwise a path or a hub id.
    path: str = "builtin:korquad_sample"
    format: Literal["auto", "korquad", "squad", "jsonl", "csv", "hub"] = "auto"
    split: str = "train"
    # Held out from `split` for eval loss when no `validation_split` is given.
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    validation_split: str | None = None
    # Template field name -> dataset column, e.g. {"question": "q"}.
    fields: dict[str, str] = Field(default_factory=dict)
    # A built-in template name (qa-ko, qa-en, alpaca, prompt-response, summarize-ko, text),
    # or a path to a YAML file with `prompt:` and `response:`.
    template: str = "qa-ko"
    prompt: str | None = Field(None, description="inline jinja2 prompt; overrides the template's")
    response: str | None = Field(None, description="inline jinja2 response; overrides the template's")
    chat: bool = Field(False, description="wrap prompt and response in the model's chat template")
    loss_on: Literal["response", "all"] = "response"
    max_length: int = Field(512, gt=0, le=2**20, description="longest example in tokens; longer ones are cut")
    packing: bool = False
    limit: int | None = Field(None, gt=0)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class TrainingSettings(Strict):
    epochs: float = Field(3.0, gt=0, le=10_000)
    max_steps: int = Field(-1, le=10**9, description="> 0 overrides epochs")
    batch_size: int | Literal["auto"] = "auto"
    gradient_accumulation: int = Field(1, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
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
    ] = "cosine"
    # A fraction of the total steps when < 1, a number of steps otherwise.
    warmup: float = Field(0.03, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(0.3, ge=0)
    # auto: paged 8-bit AdamW on CUDA, plain AdamW elsewhere (paged optimizers need CUDA).
    optimizer: Literal[
        "auto",
        "adamw_torch",
        "adamw_torch_fused",
        "adamw_8bit",
        "paged_adamw_8bit",
        "paged_adamw_32bit",
        "adafactor",
        "sgd",
    ] = "auto"
    # auto: on CUDA, off when one micro-step's estimated activations fit in free GPU memory, else on; off
    # elsewhere. An explicit `true` asks for the low-memory mode: the 4-bit base stays 4-bit too.
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    # auto: on unless data.packing. Sequences are concatenated into one row with per-sequence position ids
    # (no compute on padding), so the whole global batch runs as one micro-step.
    padding_free: bool | Literal["auto"] = "auto"
    # auto: Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) on CUDA when liger-kernel is installed.
    liger: bool | Literal["auto"] = "auto"
    # auto (CUDA): replace the frozen 4-bit linear layers by their bf16 dequantization when they fit in free
    # memory, unless gradient_checkpointing is explicitly true. Same QLoRA math, minus a dequantization per use.
    dequantize_base: bool | Literal["auto"] = "auto"
    group_by_length: bool = False
    eval_steps: int | None = Field(None, gt=0, description="evaluate every N steps; default: once per epoch")
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(100, gt=0)
    save_total_limit: int | None = Field(2, gt=0)
    seed: int = Field(42, ge=0, le=MAX_SEED)

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value):
        if isinstance(value, int) and value <= 0:
            raise ValueError("expected a positive integer or 'auto'")
        return value


class TrainConfig(Strict):
    name: str = "tiny-ko-qa"
    base: str = "tiny:llama-ko"
    output_dir: str | None = Field(None, description="default: adapters/<name>")
    quantization: Quantization = Field(default_factory=Quantization)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value):
        return check_name(value, "name")

    @model_validator(mode="after")
    def _resolve_output(self):
        if self.output_dir is None:
            object.__setattr__(self, "output_dir", f"adapters/{self.name}")
        return self
