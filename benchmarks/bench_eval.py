"""Evaluation rows: harness eval beside lm-evaluation-harness and the plain transformers paths.

Peers, as a careful user writes them: 4-bit + PeftModel batched `generate` (batch 16 and 64),
lm-evaluation-harness's HF backend (batch 16), NF4 dequantized to bf16 with the LoRA merged and
plain `generate` (batch 64), the same with `cache_implementation="static"` (transformers
compiles the decode step; batch 64, and batch 1 for decode speed), and the 4-bit forward for
perplexity (8 × 1024 tokens). Every row records its figure and peak memory; a failing row
records its error and the others still run.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from common import ROOT, SEED_LORA, device_map, free, peak


def random_adapter(base: str, out: Path) -> str:
    """A LoRA with non-zero weights (the cost of applying it does not depend on the values)."""
    if (out / "adapter_config.json").is_file():
        return str(out)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.model.loading import resolve_model_ref

    model = AutoModelForCausalLM.from_pretrained(resolve_model_ref(base), dtype="auto", device_map=device_map())
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            target_modules=SEED_LORA["target_modules"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        ),
    )
    peft_model.save_pretrained(out)
    del model, peft_model
    free()
    return str(out)


NEW_TOKENS = 32


def row(figures: dict, name: str, fn, *args, save=None, **kwargs):
    """Run one benchmark row; its figures, or its error, land in figures[name]."""
    free()
    started = time.time()
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "traceback": traceback.format_exc()[-1500:]}
    figures[name] = {k: v for k, v in result.items() if not k.startswith("_")}  # _keys: for the caller only
    figures[name]["row_wall_s"] = round(time.time() - started, 2)
    print(f"[{name}] {json.dumps({k: v for k, v in figures[name].items() if k != 'traceback'})}", flush=True)
    if save:
        save()
    free()
    return result


def bench_eval(
    base: str,
    adapter: str,
    data: str,
    work: Path,
    smoke: bool,
    batch: int | None,
    samples: int = 1024,
    peers: bool = True,
    save=None,
    peer_samples: int = 128,
    figures: dict | None = None,
    verify: int = 16,
    questions: str = "sample",
) -> dict:
    """Fills `figures` (the caller's dict, saved after every row) and returns it.

    questions: which KorQuAD dev questions harness evaluates (see `question_set`); the peers take
    the first `samples` of the same prompts, in the file's order."""
    new = 8 if smoke else NEW_TOKENS
    samples, peer_samples = (8, 8) if smoke else (samples, min(peer_samples, samples))
    figures = figures if figures is not None else {}
    path, limit = question_set(data, questions, samples, work)
    figures.update(new_tokens=new, questions=questions, samples=limit, peer_samples=peer_samples)
    ours = row(figures, "harness_eval", harness_eval, base, adapter, path, work, limit, new, batch, verify, save=save)
    prompts = ours.get("_prompts") or []
    if not prompts:
        return figures
    figures["prompt_tokens_mean"] = ours.get("prompt_tokens_mean")
    figures["harness_questions"] = len(prompts)
    prompts = prompts[:samples]
    if peers:
        row(figures, "static_cache", static_cache_peer, base, adapter, prompts, new, smoke, save=save)
        row(figures, "peft_4bit", peft_4bit_peers, base, adapter, prompts[:peer_samples], new, smoke, save=save)
    return figures


def question_set(data: str, questions: str, n: int, work: Path) -> tuple[str, int | None]:
    """(dataset path, suite limit) for harness: "sample" is the suite's seeded sample of n questions
    (few share a passage); "first" the first n in the file's order, as lm-evaluation-harness's
    --limit takes them (about six per passage, as in the whole set); "all" every question."""
    if questions == "sample":
        return data, n
    if questions == "all":
        return data, None
    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    kept, left = [], n
    for article in doc["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if left > 0:
                paragraphs.append({**paragraph, "qas": paragraph["qas"][:left]})
                left -= len(paragraphs[-1]["qas"])
        if paragraphs:
            kept.append({**article, "paragraphs": paragraphs})
    path = work / f"korquad-first-{n}.json"
    path.write_text(json.dumps({**doc, "data": kept}, ensure_ascii=False), encoding="utf-8")
    return str(path), None


def _suite(base: str, adapter: str, data: str, n: int, new: int, batch: int | None, extra: dict | None = None):
    from harness.config import SuiteConfig, load_config

    overrides = {
        "dataset.path": data,
        "dataset.path_env": None,
        "dataset.limit": n,
        "models.base": base,
        "generation.max_new_tokens": new,
        "generation.min_new_tokens": new,
        "generation.stop": [],
        "bootstrap.resamples": 200,
        **(extra or {}),
    }
    if batch:
        overrides["batch_size"] = batch
    suite = load_config(SuiteConfig, ROOT / "suites" / "korquad.yaml", overrides)
    suite.models.adapters = {"adapter": adapter}
    return suite


def harness_eval(
    base: str, adapter: str, data: str, work: Path, n: int, new: int, batch: int | None, verify: int
) -> dict:
    """`harness eval` of base + adapter end to end (load, both models, scoring), as the command runs it."""
    from harness.evaluate.run import run_eval

    suite = _suite(base, adapter, data, n, new, batch, {"verify": verify})
    started = time.time()
    result = run_eval(suite, "suites/korquad.yaml", work / "runs", run_id=f"bench-{int(started)}", log=print)
    wall = time.time() - started
    t = result.results["throughput"]
    records = [
        json.loads(line)
        for line in (result.run_dir / "records" / "adapter.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return {
        "engine": result.results.get("engine"),
        "wall_s": wall,
        "peak_memory_bytes": peak(),
        "prompts_per_s": {name: c["samples_per_s"] for name, c in t.items()},
        "generation_wall_s": {name: c["wall_s"] for name, c in t.items()},
        "verify": {name: v["summary"] for name, v in result.results.get("verify", {}).items()},
        "wall_s_without_verify": wall - sum(v["wall_s"] for v in result.results.get("verify", {}).values()),
        "metrics": {name: {m: v["value"] for m, v in ms.items()} for name, ms in result.results["metrics"].items()},
        "prompt_tokens_mean": sum(r["prompt_tokens"] for r in records) / len(records),
        "_prompts": [r["prompt"] for r in records],
    }


def _load_4bit(base: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from harness.model.loading import resolve_model_ref

    path = resolve_model_ref(base)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=dtype,
        device_map={"": 0} if cuda else None,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        ),
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    return model, tokenizer, dtype


def _generate_all(
    model, tokenizer, prompts: list[str], new: int, batch: int, pad_to: int | None = None, **kwargs
) -> float:
    """Plain batched `generate` over `prompts`; returns the wall time. `pad_to`: pad prompts to a
    multiple of it (with a static cache every new length is a new shape to compile)."""
    import torch

    device = next(model.parameters()).device
    started = time.time()
    for i in range(0, len(prompts), batch):
        enc = tokenizer(prompts[i : i + batch], return_tensors="pt", padding=True, pad_to_multiple_of=pad_to).to(device)
        with torch.inference_mode():
            model.generate(
                **enc,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                **kwargs,
            )
    _sync()
    return time.time() - started


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def static_cache_peer(base: str, adapter: str, prompts: list[str], new: int, smoke: bool) -> dict:
    """NF4 loaded, dequantized to bf16 (transformers' `dequantize()`), LoRA merged with peft; base then
    adapter generated at batch 64 with `cache_implementation="static"` (and, for comparison,
    plain `generate`); batch-1 decode speed. The end-to-end wall covers load, compile and both models."""
    import torch
    from peft import PeftModel

    out: dict = {}
    started = time.time()
    model, tokenizer, _dtype = _load_4bit(base)
    model = model.dequantize()
    out["load_dequantize_s"] = time.time() - started
    batch = 4 if smoke else 64
    static = {"cache_implementation": "static", "pad_to": 64}
    # First batch: transformers compiles the decode step (timed apart, as the table does).
    warm = time.time()
    _generate_all(model, tokenizer, prompts[:batch], new, batch, **static)
    out["compile_first_batch_s"] = time.time() - warm
    base_wall = _generate_all(model, tokenizer, prompts, new, batch, **static)
    merge_started = time.time()
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merge_s = time.time() - merge_started
    adapter_wall = _generate_all(model, tokenizer, prompts, new, batch, **static)
    out.update(
        static_batch64_prompts_per_s={"base": len(prompts) / base_wall, "adapter": len(prompts) / adapter_wall},
        merge_s=merge_s,
        end_to_end_s=time.time() - started,
        peak_memory_bytes=peak(),
    )
    # The same merged bf16 model with plain `generate` (dynamic cache), on a quarter of the prompts.
    part = prompts[: max(batch, len(prompts) // 4)]
    out["merged_plain_batch64_prompts_per_s"] = len(part) / _generate_all(model, tokenizer, part, new, batch)
    # Batch 1: new tokens per second after a warm-up compile at that shape.
    tokens = 16 if smoke else 256
    _generate_all(model, tokenizer, prompts[:1], tokens, 1, **static)
    wall = _generate_all(model, tokenizer, prompts[1:2], tokens, 1, **static)
    out["static_batch1_new_tokens_per_s"] = tokens / wall
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def peft_4bit_peers(base: str, adapter: str, prompts: list[str], new: int, smoke: bool) -> dict:
    """4-bit + PeftModel: batched generate at 16 and 64, lm-evaluation-harness at 16, perplexity forward."""
    from peft import PeftModel

    model, tokenizer, _dtype = _load_4bit(base)
    model = PeftModel.from_pretrained(model, adapter).eval()
    out: dict = {}
    for batch in (16, 64):
        out[f"generate_batch{batch}_prompts_per_s"] = len(prompts) / _generate_all(
            model, tokenizer, prompts, new, batch
        )
    out["peak_memory_bytes_generate"] = peak()
    try:
        out["lm_eval_hf_batch16_prompts_per_s"] = lm_eval_hf(model, tokenizer, prompts, new)
    except ImportError as exc:
        out["lm_eval_hf_batch16_prompts_per_s"] = f"not installed: {exc}"
    return out


def lm_eval_hf(model, tokenizer, prompts: list[str], new: int) -> float:
    """lm-evaluation-harness's HF backend at batch 16 on the same 4-bit + PeftModel and prompts."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=16, device="cuda" if torch.cuda.is_available() else "cpu"
    )
    kwargs = {"until": ["\n\n\n\n"], "max_gen_toks": new, "min_new_tokens": new, "do_sample": False}
    requests = [Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)]
    started = time.time()
    lm.generate_until(requests)
    _sync()
    return len(prompts) / (time.time() - started)
