"""`harness merge` on every decoder family of the zoo: the export, loaded with
`AutoModelForCausalLM` alone, computes base + adapter as peft computes it unmerged — on the
float32 base for a plain merge, on the 4-bit NF4 base (what was trained and evaluated) for
`--dequantize` — logits within LOGIT_TOLERANCE and the same greedy answers. GPT-2's Conv1D
layers keep their own (transposed) layout in both."""

from __future__ import annotations

import json

import pytest
from zoo_helpers import DECODERS, LOGIT_TOLERANCE, PROMPTS, greedy, load_reference, one_torch_thread

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("dequantize", [False, True], ids=["plain", "dequantize"])
@pytest.mark.parametrize("family", DECODERS)
def test_export_equals_base_plus_adapter(family, dequantize, zoo_adapter, run_cli, workdir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.model.tiny import tiny_model_path

    adapter, _record = zoo_adapter(family)
    code, _out, err = run_cli(
        ["merge", "--base", f"tiny:{family}", "--adapter", adapter, "--out", "export", "--dtype", "fp32"]
        + (["--dequantize"] if dequantize else [])
    )
    assert code == 0, err
    config = json.loads((workdir / "export" / "config.json").read_text())
    assert "quantization_config" not in config
    export = AutoModelForCausalLM.from_pretrained(workdir / "export", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(workdir / "export")
    reference, ref_tokenizer = load_reference(str(tiny_model_path(f"tiny:{family}")), adapter, four_bit=dequantize)
    with one_torch_thread():
        for text in PROMPTS[:4]:
            ids = ref_tokenizer(text, return_tensors="pt").input_ids
            assert tokenizer(text, return_tensors="pt").input_ids.tolist() == ids.tolist()
            with torch.inference_mode():
                got, want = export(input_ids=ids).logits[0], reference(input_ids=ids).logits[0]
            gap = float((got - want).abs().max())
            assert gap <= LOGIT_TOLERANCE, f"{text!r}: export differs from base + adapter by {gap:.3g}"
            assert greedy(export, tokenizer, ids[0].tolist()) == greedy(reference, ref_tokenizer, ids[0].tolist())
