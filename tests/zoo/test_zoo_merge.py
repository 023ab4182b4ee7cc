"""`harness merge` on every decoder family of the zoo: the export, loaded with
`AutoModelForCausalLM` alone, computes base + adapter as peft computes it unmerged — on the
float32 base for a plain merge, on the 4-bit NF4 base (what was trained and evaluated) for
`--dequantize` — logits within LOGIT_TOLERANCE and the same greedy answers. GPT-2's Conv1D
layers keep their own (transposed) layout in both. Every encoder-decoder family too, loaded with
`AutoModelForSeq2SeqLM`, on an adapter made with peft (the decoder's logits given the source)."""

from __future__ import annotations

import json

import pytest
from zoo_helpers import (
    DECODERS,
    ENCODER_DECODERS,
    LOGIT_TOLERANCE,
    PROMPTS,
    SEQ2SEQ_TARGETS,
    decoder_logits,
    greedy,
    load_reference,
    one_torch_thread,
    seq2seq_adapter,
)

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


@pytest.fixture(scope="module")
def seq2seq_adapters(tmp_path_factory, harness_cache):
    """`get(family)`: a peft LoRA adapter (random, not zero) on the family's attention projections."""
    from harness.model.tiny import tiny_model_path

    made: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in made:
            out = tmp_path_factory.mktemp(f"{family}-lora") / "adapter"
            made[family] = str(seq2seq_adapter(str(tiny_model_path(f"tiny:{family}")), out, SEQ2SEQ_TARGETS[family]))
        return made[family]

    return get


@pytest.mark.parametrize("dequantize", [False, True], ids=["plain", "dequantize"])
@pytest.mark.parametrize("family", ENCODER_DECODERS)
def test_encoder_decoder_export_equals_base_plus_adapter(family, dequantize, seq2seq_adapters, run_cli, workdir):
    """The encoder-decoder export, loaded with `AutoModelForSeq2SeqLM` alone, computes the decoder's
    logits given the source as peft computes base + adapter unmerged, tied embeddings (T5's shared
    + lm_head, BART's and mBART's four) and mT5's own lm_head reloaded as they were."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from harness.model.tiny import tiny_model_path

    adapter = seq2seq_adapters(family)
    code, _out, err = run_cli(
        ["merge", "--base", f"tiny:{family}", "--adapter", adapter, "--out", "export", "--dtype", "fp32"]
        + (["--dequantize"] if dequantize else [])
    )
    assert code == 0, err
    assert json.loads((workdir / "export" / "merge_record.json").read_text())["verification"]["passed"]
    export = AutoModelForSeq2SeqLM.from_pretrained(workdir / "export", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(workdir / "export")
    reference, ref_tokenizer = load_reference(str(tiny_model_path(f"tiny:{family}")), adapter, four_bit=dequantize)
    head, embed = export.get_output_embeddings().weight, export.get_input_embeddings().weight
    assert (head.data_ptr() == embed.data_ptr()) == (family != "mt5")
    with one_torch_thread():
        for text in PROMPTS[:4]:
            source = ref_tokenizer(text, return_tensors="pt").input_ids
            assert tokenizer(text, return_tensors="pt").input_ids.tolist() == source.tolist()
            answer = greedy(reference, ref_tokenizer, source[0].tolist())
            assert greedy(export, tokenizer, source[0].tolist()) == answer
            decoder_ids = torch.tensor([[export.config.decoder_start_token_id, *answer]])
            got, want = decoder_logits(export, source, decoder_ids), decoder_logits(reference, source, decoder_ids)
            gap = float((got - want).abs().max())
            assert gap <= LOGIT_TOLERANCE, f"{text!r}: export differs from base + adapter by {gap:.3g}"
