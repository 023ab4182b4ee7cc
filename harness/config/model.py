"""How the base model is loaded: shared by train, eval, generate and merge verification."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.config.loader import Strict


class Quantization(Strict):
    """4-bit NF4 with double quantization is the QLoRA default; `none` loads the base unquantized."""

    mode: Literal["nf4", "fp4", "int8", "none"] = Field("nf4", description="bitsandbytes quantization of the base")
    double_quant: bool = Field(True, description="quantize the quantization constants too")
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16, fp16 or fp32 from the hardware"
    )
