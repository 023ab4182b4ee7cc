"""`harness merge` on the built-in encoder-decoders (tiny:t5-ko, tiny:bart-ko), on an adapter made
with peft in the test:

- the export (plain, and --dequantize) loads with AutoModelForSeq2SeqLM alone and computes the
  decoder's logits given the source as transformers + peft compute base + adapter unmerged (the
  float32 base, or the 4-bit NF4 base for --dequantize), with the same greedy answers;
- bf16 and fp16 exports pass verification and reload in their dtype;
- the card names the text2text-generation pipeline and AutoModelForSeq2SeqLM;
- an export that differs from what was evaluated beyond the tolerance fails verification.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))

from zoo_helpers import LOGIT_TOLERANCE, decoder_logits, greedy, load_reference, seq2seq_adapter

pytestmark = pytest.mark.slow
BASES = {"t5-ko": ["q", "v", "wo"], "bart-ko": ["q_proj", "v_proj", "fc2"]}
SOURCE = "민지: 오늘 회의 자료 다 정리했어?\n준호: 응, 방금 끝내서 공유 폴더에 올렸어."


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, harness_cache) -> dict[str, str]:
    from harness.model.tiny import tiny_model_path

    root = tmp_path_factory.mktemp("seq2seq-adapters")
    return {
        base: str(seq2seq_adapter(str(tiny_model_path(f"tiny:{base}")), root / base, targets))
        for base, targets in BASES.items()
    }


def _merge_cli(run_cli, base: str, adapter: str, *extra: str) -> tuple[int, str]:
    code, stdout, stderr = run_cli(["merge", "--base", f"tiny:{base}", "--adapter", adapter, "--out", "e", *extra])
    return code, stdout + stderr


@pytest.mark.parametrize("dequantize", [False, True], ids=["plain", "dequantize"])
@pytest.mark.parametrize("base", list(BASES))
def test_export_equals_base_plus_adapter(base, dequantize, adapters, run_cli, workdir):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from harness.model.tiny import tiny_model_path

    code, out = _merge_cli(run_cli, base, adapters[base], "--dtype", "fp32", *(["--dequantize"] * dequantize))
    assert code == 0, out
    record = json.loads((workdir / "e" / "merge_record.json").read_text())
    assert record["verification"]["passed"] and record["dequantize"] == dequantize
    card = (workdir / "e" / "README.md").read_text()
    assert "pipeline_tag: text2text-generation" in card and "AutoModelForSeq2SeqLM.from_pretrained" in card
    export = AutoModelForSeq2SeqLM.from_pretrained(workdir / "e", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(workdir / "e")
    reference, ref_tokenizer = load_reference(str(tiny_model_path(f"tiny:{base}")), adapters[base], dequantize)
    source = ref_tokenizer(SOURCE, return_tensors="pt").input_ids
    assert tokenizer(SOURCE, return_tensors="pt").input_ids.tolist() == source.tolist()
    answer = greedy(reference, ref_tokenizer, source[0].tolist())
    assert greedy(export, tokenizer, source[0].tolist()) == answer
    decoder_ids = torch.tensor([[reference.config.decoder_start_token_id, *answer]])
    want = decoder_logits(reference, source, decoder_ids)
    with reference.disable_adapter():
        assert float((decoder_logits(reference, source, decoder_ids) - want).abs().max()) > 100 * LOGIT_TOLERANCE
    assert float((decoder_logits(export, source, decoder_ids) - want).abs().max()) <= LOGIT_TOLERANCE


@pytest.mark.parametrize(("base", "dtype"), [("t5-ko", "bf16"), ("bart-ko", "fp16")])
def test_half_precision_exports_pass_and_reload_in_their_dtype(base, dtype, adapters, run_cli, workdir):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    code, out = _merge_cli(run_cli, base, adapters[base], "--dtype", dtype, "--dequantize")
    assert code == 0, out
    record = json.loads((workdir / "e" / "merge_record.json").read_text())
    assert record["verification"]["passed"] and record["dtype"] == dtype
    export = AutoModelForSeq2SeqLM.from_pretrained(workdir / "e")
    assert export.get_input_embeddings().weight.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def test_verification_failure_exits_1_and_names_the_gap(adapters, run_cli, workdir):
    """A plain merge is not the 4-bit model that was evaluated; held to a tolerance it fails."""
    code, out = _merge_cli(
        run_cli, "bart-ko", adapters["bart-ko"], "--dtype", "fp32", "--quantization-tolerance", "1e-9"
    )
    assert code == 1
    assert "quantization gap" in out and "--dequantize" in out
    assert not (workdir / "e").exists() and (workdir / "e.failed" / "merge_record.json").is_file()
