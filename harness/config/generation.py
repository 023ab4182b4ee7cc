"""Generation settings: one definition shared by eval suites, generate and chat."""
from __future__ import annotations

from pydantic import Field, model_validator

from harness.config.loader import Strict


class GenerationSettings(Strict):
    max_new_tokens: int = Field(64, gt=0)
    min_new_tokens: int = Field(0, ge=0)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram_size: int = Field(0, ge=0)
    num_beams: int = Field(1, gt=0)
    # The output is cut at the first of these; generation also stops there.
    stop: list[str] = Field(default_factory=list)
    seed: int = 0

    @model_validator(mode="after")
    def _min_below_max(self):
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        return self
