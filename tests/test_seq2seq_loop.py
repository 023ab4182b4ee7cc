"""The encoder-decoder loop as a user runs it, on tiny:t5-ko and tiny:bart-ko with real 4-bit QLoRA on
CPU: `harness train` (the dialogue preset, a few steps) → `harness eval` of the dialogue suite (ROUGE on
MeCab morphemes) → `harness merge` → the export reloaded with AutoModelForSeq2SeqLM alone computes what
the base with the adapter attached computes (transformers + peft, in the test); and a three-point rank
sweep on the dialogue sample → one `harness eval --sweep` → one report with the rank plot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import harness, read_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "harness" / "data" / "presets" / "tiny-ko-dialogue.yaml"
SUITE = REPO / "suites" / "summarization_dialogue_ko.yaml"
FEW_STEPS = ["--set", "training.max_steps=6", "--set", "data.limit=16", "--set", "training.save_steps=1000"]
SHORT_EVAL = ["--limit", "6", "--set", "generation.max_new_tokens=12", "--set", "bootstrap.resamples=50"]
ROUGE = ["rouge1[mecab]", "rouge2[mecab]", "rougeL[mecab]", "rougeLsum[mecab]"]


@pytest.mark.parametrize("base", ["tiny:t5-ko", "tiny:bart-ko"])
def test_train_eval_merge_reload(base, tmp_path, harness_cache):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from harness.model.loading import resolve_model_ref

    adapter, runs, export = tmp_path / "adapter", tmp_path / "runs", tmp_path / "export"
    code, out, err = harness("train", PRESET, "--base", base, *FEW_STEPS, "--output-dir", adapter)
    assert code == 0, err
    assert "Seq2SeqTrainer" in out and (adapter / "adapter_model.safetensors").is_file()

    code, out, err = harness(
        "eval", SUITE, "--base", base, "--adapter", f"dialogue={adapter}", *SHORT_EVAL, "--out", runs
    )
    assert code == 0, err
    assert "is an encoder-decoder; transformers' generate" in out  # the engine line says which path ran
    results = read_json(next(runs.iterdir()) / "results.json")
    for model in ("base", "dialogue"):
        assert list(results["metrics"][model]) == ROUGE
        assert all(0 <= results["metrics"][model][m]["value"] <= 100 for m in ROUGE)

    code, out, err = harness("merge", "--base", base, "--adapter", adapter, "--dtype", "fp32", "--out", export)
    assert code == 0, err
    assert read_json(export / "merge_record.json")["verification"]["passed"]

    path = resolve_model_ref(base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    source = tokenizer(["민지: 내일 회의 몇 시야?\n준호: 오전 열 시로 옮겼어."], return_tensors="pt")
    start = AutoModelForSeq2SeqLM.from_pretrained(path).config.decoder_start_token_id
    decoder = torch.tensor([[start, *tokenizer("회의 시간").input_ids]])
    with torch.no_grad():
        reference_model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(path), str(adapter)).eval()
        reference = reference_model(**source, decoder_input_ids=decoder).logits
        bare = reference_model.get_base_model()
        with reference_model.disable_adapter():
            without = bare(**source, decoder_input_ids=decoder).logits
        exported = AutoModelForSeq2SeqLM.from_pretrained(export).eval()
        assert type(exported).__name__.endswith("ForConditionalGeneration")
        got = exported(**source, decoder_input_ids=decoder).logits
    assert float((reference - without).abs().max()) > 1e-2  # the adapter moves the logits
    assert torch.allclose(got, reference, atol=1e-4), float((got - reference).abs().max())


def test_rank_sweep_on_the_dialogues_gives_one_report_with_the_rank_plot(tmp_path, harness_cache):
    sweep, runs = tmp_path / "sweep", tmp_path / "runs"
    code, _out, err = harness("train", PRESET, "--sweep", "lora.r=4,8,16", *FEW_STEPS, "--output-dir", sweep)
    assert code == 0, err
    assert [p["status"] for p in read_json(sweep / "sweep.json")["points"]] == ["ok", "ok", "ok"]

    code, _out, err = harness("eval", SUITE, "--base", "tiny:bart-ko", "--sweep", sweep, *SHORT_EVAL, "--out", runs)
    assert code == 0, err
    run = next(runs.iterdir())
    results = read_json(run / "results.json")
    assert list(results["metrics"]) == ["base", "r=4", "r=8", "r=16"]

    code, _out, err = harness("report", run, "-o", tmp_path / "page.html")
    assert code == 0, err
    html = (tmp_path / "page.html").read_text(encoding="utf-8")
    section = html[html.index('id="sweep-charts"') : html.index('id="sweep-table"')]
    assert section.count('<figure class="chart sweep"') == len(ROUGE)
    figure = section[section.index('data-metric="rouge1[mecab]"') :]
    figure = figure[: figure.index("</figure>")]
    scores = {name: results["metrics"][name]["rouge1[mecab]"]["value"] for name in ("r=4", "r=8", "r=16")}
    best = re.findall(r'class="point best" data-point="([^"]+)"', figure)
    assert len(best) == 1 and scores[best[0]] == max(scores.values())  # ROUGE: higher is better
