"""Batch-1 decode, perplexity and same-outputs rows: harness beside the plain 4-bit + PeftModel path."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench_eval import _sync, row
from common import ROOT, free, peak


def bench_decode(
    base: str, adapter: str, data: str, work: Path, smoke: bool, save=None, figures: dict | None = None
) -> dict:
    from harness.config.model import Quantization
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    figures = figures if figures is not None else {}
    env = detect()
    models = attach_adapters(load_base(base, Quantization(), env), {"adapter": adapter})
    prompts = _prompts(data, 8)
    row(figures, "same_outputs", same_outputs, models, prompts, save=save)
    row(figures, "trained_model_verify", trained_model_verify, work, 16 if smoke else 98, save=save)
    tokens = 16 if smoke else 256
    row(figures, "batch1_decode", batch1_decode, models, prompts[0], tokens, save=save)
    del models
    free()
    row(figures, "batch1_static_peer", batch1_static_peer, base, adapter, prompts[0], tokens, save=save)
    ours, peer = figures["batch1_decode"], figures["batch1_static_peer"]
    if "auto_4bit_new_tokens_per_s" in ours and "new_tokens_per_s" in peer:
        figures["batch1_ratio"] = ours["auto_4bit_new_tokens_per_s"] / peer["new_tokens_per_s"]
    free()
    docs = _documents(base, data, work, 4 if smoke else 64, 120 if smoke else 1000)
    row(figures, "perplexity_harness", perplexity_harness, base, adapter, docs, save=save)
    row(figures, "perplexity_4bit_forward", perplexity_4bit, base, adapter, docs, save=save)
    ours, peer = figures["perplexity_harness"], figures["perplexity_4bit_forward"]
    if "tokens_per_s" in ours and "tokens_per_s" in peer:
        figures["perplexity_ratio"] = ours["tokens_per_s"] / peer["tokens_per_s"]
        figures["perplexity_relative_difference"] = abs(ours["perplexity"] - peer["perplexity"]) / peer["perplexity"]
    return figures


def _prompts(data: str, n: int) -> list[str]:
    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    out = []
    for article in doc["data"]:
        for p in article["paragraphs"]:
            for q in p["qas"]:
                out.append(f"다음 글을 읽고 질문에 답하세요.\n\n{p['context']}\n\n질문: {q['question']}\n답:")
                if len(out) == n:
                    return out
    return out


def same_outputs(models, prompts: list[str]) -> dict:
    """Last-token logits of the fast path against the plain 4-bit + PeftModel path: dense weights
    alone, then with the fused kernels the decoder adds on a GPU, then the plain path again (the
    patches must be gone)."""
    import torch

    from harness.engine import fused

    tokenizer = models.base.tokenizer
    device = next(models.base.model.parameters()).device
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    out = {}
    for name in ("base", "adapter"):
        with torch.inference_mode():
            with models.use(name) as model:
                plain = model(**enc).logits[:, -1].float()
            with models.dense(), models.use(name) as model:
                fast = {"dense": model(**enc).logits[:, -1].float()}
                if fused.available(model):
                    with fused.fused_kernels(model):
                        fast["dense_fused"] = model(**enc).logits[:, -1].float()
            with models.use(name) as model:
                fast["plain_again"] = model(**enc).logits[:, -1].float()
        out[name] = {"logit_scale": float(plain.abs().mean()), "prompts": len(prompts)}
        for path, logits in fast.items():
            diff = (logits - plain).abs()
            out[name][path] = {
                "max_abs_logit_diff": float(diff.max()),
                "mean_abs_logit_diff": float(diff.mean()),
                "argmax_agree": int((logits.argmax(-1) == plain.argmax(-1)).sum()),
            }
    return out


def trained_model_verify(work: Path, samples: int) -> dict:
    """Greedy agreement of the fast engine with the plain path on a trained model: README's demo
    (the tiny model trained on the KorQuAD sample), evaluated with --verify on this machine."""
    import subprocess
    import sys

    adapter = work / "tiny-ko-qa"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    harness = [sys.executable, "-m", "harness"]
    subprocess.run(
        harness + ["train", "--overwrite", "--output-dir", str(adapter)], check=True, env=env, stdout=subprocess.DEVNULL
    )
    subprocess.run(
        harness
        + [
            "eval",
            str(ROOT / "suites" / "korquad_sample.yaml"),
            "--adapter",
            f"tiny-ko-qa={adapter}",
            "--engine",
            "fast",
            "--verify",
            str(samples),
            "--out",
            str(work / "runs"),
            "--run-id",
            "trained-verify",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    results = json.loads((work / "runs" / "trained-verify" / "results.json").read_text(encoding="utf-8"))
    return {
        "engine": results["engine"],
        "fused_kernels": results.get("fused_kernels"),
        "verify": {k: v["summary"] for k, v in results["verify"].items()},
        "metrics": {k: {m: v["value"] for m, v in ms.items()} for k, ms in results["metrics"].items()},
    }


def batch1_decode(models, prompt: str, tokens: int) -> dict:
    """`harness generate`'s streamed answer (static cache + CUDA graph) vs transformers' generate, batch 1."""
    from harness.config.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens)
    tokenizer = models.base.tokenizer
    out = {}
    with models.use("adapter") as model:
        for engine in ("auto", "plain"):
            out[f"{engine}_4bit_new_tokens_per_s"] = _streamed_rate(model, tokenizer, prompt, settings, engine)
        # The same streamed answer without and with the fused kernels (harness.engine.fused), each a first
        # answer: the switch is part of the kept decoder's key, so each builds and captures its own.
        for fused_kernels in ("0", "1"):
            os.environ["HARNESS_FUSED_KERNELS"] = fused_kernels
            try:
                out[f"auto_4bit_fused{fused_kernels}_again_new_tokens_per_s"] = _streamed_rate(
                    model, tokenizer, prompt, settings, warm_up=False
                )
            finally:
                del os.environ["HARNESS_FUSED_KERNELS"]
    with models.dense(), models.use("adapter") as model:
        out["auto_dense_new_tokens_per_s"] = _streamed_rate(model, tokenizer, prompt, settings)
    out["peak_memory_bytes"] = peak()
    return out


def batch1_static_peer(base: str, adapter: str, prompt: str, tokens: int) -> dict:
    """`batch1_decode`'s peer in the same run, on the same prompt: NF4 dequantized to bf16, the LoRA
    merged, `generate` with a static cache (transformers compiles the step), timed after one
    warm-up answer, as `_streamed_rate` times harness."""
    from bench_eval import _generate_all, _load_4bit
    from peft import PeftModel

    model, tokenizer, _ = _load_4bit(base)
    model = PeftModel.from_pretrained(model.dequantize(), adapter).merge_and_unload()
    static = {"cache_implementation": "static"}
    _generate_all(model, tokenizer, [prompt], tokens, 1, **static)
    wall = _generate_all(model, tokenizer, [prompt], tokens, 1, **static)
    del model
    return {"new_tokens_per_s": tokens / wall, "peak_memory_bytes": peak()}


def _streamed_rate(model, tokenizer, prompt: str, settings, engine: str = "auto", warm_up: bool = True) -> float:
    """New tokens per second of one streamed answer; `warm_up` first streams the same answer once (kernel
    compilation, graph capture), as the first answer of a `harness chat` session would."""
    from harness.engine.generation import generate_stream

    if warm_up:
        generate_stream(model, tokenizer, prompt, settings, lambda _t: None, engine=engine)
    _sync()
    started = time.time()
    result = generate_stream(model, tokenizer, prompt, settings, lambda _t: None, engine=engine)
    _sync()
    return result.generated_tokens / (time.time() - started)


def _documents(base: str, data: str, work: Path, n: int, tokens: int) -> Path:
    """n documents of about `tokens` tokens each, cut from the KorQuAD passages, as JSONL."""
    from harness.model.loading import load_tokenizer, resolve_model_ref

    tokenizer = load_tokenizer(base, resolve_model_ref(base))
    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    passages = [p["context"] for a in doc["data"] for p in a["paragraphs"]]
    ids: list[int] = []
    for passage in passages:
        ids += tokenizer(passage + "\n", add_special_tokens=False)["input_ids"]
        if len(ids) >= n * tokens:
            break
    path = work / "ppl-docs.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = tokenizer.decode(ids[i * tokens : (i + 1) * tokens])
            fh.write(json.dumps({"id": f"doc-{i}", "text": text}, ensure_ascii=False) + "\n")
    return path


def perplexity_harness(base: str, adapter: str, docs: Path) -> dict:
    from harness.config import SuiteConfig, load_config
    from harness.evaluate.run import run_eval

    suite = load_config(
        SuiteConfig,
        ROOT / "suites" / "perplexity_ko.yaml",
        {
            "dataset.path": str(docs),
            "dataset.format": "jsonl",
            "models.base": base,
            "models.include_base": False,
            "perplexity.context_length": 1024,
            "perplexity.stride": 512,
            "verify": 4,
        },
    )
    suite.models.adapters = {"adapter": adapter}
    started = time.time()
    result = run_eval(suite, "perplexity", docs.parent / "runs", run_id=f"ppl-{int(started)}", log=print)
    wall = time.time() - started
    records = [
        json.loads(line)
        for line in (result.run_dir / "records" / "adapter.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    tokens = sum(r["tokens"] for r in records)
    column = result.results["throughput"]["adapter"]
    return {
        "tokens_per_s": tokens / column["wall_s"],
        "tokens": tokens,
        "wall_s_including_load": wall,
        "perplexity": result.results["metrics"]["adapter"]["perplexity"]["value"],
        "verify": result.results.get("verify", {}).get("adapter", {}).get("summary"),
        "peak_memory_bytes": peak(),
    }


def _from_bos(tokenizer, ids: list[int]) -> list[int]:
    bos = tokenizer.bos_token_id
    return ids if bos is None or (ids and ids[0] == bos) else [bos, *ids]


def perplexity_4bit(base: str, adapter: str, docs: Path) -> dict:
    """The plain path: 4-bit + PeftModel forward, 8 documents × ≤ 1024 tokens per batch, summed NLL."""
    import math

    import torch
    from bench_eval import _load_4bit
    from peft import PeftModel

    model, tokenizer, _ = _load_4bit(base)
    model = PeftModel.from_pretrained(model, adapter).eval()
    texts = [json.loads(line)["text"] for line in docs.read_text(encoding="utf-8").splitlines()]
    # Every token scored, the first from BOS where the tokenizer has one (as harness and
    # lm-evaluation-harness score a document), whether or not the tokenizer adds it itself.
    encoded = [_from_bos(tokenizer, tokenizer(t, add_special_tokens=True)["input_ids"])[:1024] for t in texts]
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    _sync()
    started = time.time()
    for i in range(0, len(encoded), 8):
        batch = encoded[i : i + 8]
        width = max(len(b) for b in batch)
        ids = torch.tensor([b + [0] * (width - len(b)) for b in batch], device=device)
        mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b in batch], device=device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
        nll += float(loss)
        count += int((labels != -100).sum())
    wall = time.time() - started
    return {
        "tokens_per_s": count / wall,
        "tokens": count,
        "perplexity": math.exp(nll / count),
        "peak_memory_bytes": peak(),
    }
