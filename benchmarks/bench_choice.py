"""Multiple-choice rows: `harness eval` of a KMMLU-shaped choice suite beside lm-evaluation-harness's
HF backend, same 4-bit model, same requests, one process.

Each sample is a KMMLU question as lm-evaluation-harness's kmmlu task writes it (question, four
options, "정답："; choices " A" … " D"), built from KorQuAD text so lengths are realistic: a
passage excerpt and a question, the question's answer and three other answers as options, and
`shots` solved examples before it, drawn like lm-evaluation-harness's few-shot sampler from the
subject's dev pool of five (KMMLU's dev split), so with 5 shots every context of a subject starts
with one of the 120 orders of the same five examples, as in KMMLU. harness
runs the base (its default engine) and an adapter column; lm-evaluation-harness's HFLM wraps the
4-bit model object (batch "auto" and fixed batches) and a PeftModel of it, on the contexts
harness recorded. harness runs twice: the first eval pays the process's one-time costs (the cold
row), the second is timed as a user's next eval. Every row records requests/s, context tokens/s, its
accuracy and peak memory;
beside them, the bf16 compute limit for those tokens (2 × parameters × tokens / the GPU's dense
bf16 peak).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from bench_eval import _load_4bit, _sync, row
from common import free, peak

LETTERS = "ABCD"
# KMMLU's dev split: five solved examples per subject, its few-shot pool.
DEV_SHOTS = 5
# Dense bf16 peak of the GPUs these figures are taken on (the vendors' datasheets, without sparsity).
BF16_PEAK = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def kmmlu_like(data: str, work: Path, n: int, subjects: int, seed: int = 0) -> tuple[Path, Path]:
    """(a test file of `n` KMMLU-shaped examples over `subjects` subjects, a dev file of exactly
    DEV_SHOTS solved examples per subject: KMMLU's few-shot pool), from KorQuAD's dev set."""
    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    qas = [
        (paragraph["context"], qa)
        for article in doc["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    rng = random.Random(seed)
    answers = [qa["answers"][0]["text"] for _, qa in qas]
    picked = rng.sample(qas, min(n + DEV_SHOTS * subjects, len(qas)))
    files = {"dev": work / f"kmmlu-like-dev-{subjects}.jsonl", "test": work / f"kmmlu-like-{n}-{subjects}.jsonl"}
    with files["dev"].open("w", encoding="utf-8") as dev, files["test"].open("w", encoding="utf-8") as test:
        for i, (context, qa) in enumerate(picked):
            right = qa["answers"][0]["text"]
            options = [right, *rng.sample([a for a in answers if a != right], 3)]
            rng.shuffle(options)
            start = max(0, qa["answers"][0]["answer_start"] - rng.randint(100, 300))
            question = f"{context[start : start + 400].strip()}\n{qa['question']}"
            example = {"question": question, **dict(zip(LETTERS, options)), "answer": options.index(right) + 1}
            # The first DEV_SHOTS × subjects examples are the dev pools; few-shot examples are drawn per subject.
            out = dev if i < DEV_SHOTS * subjects else test
            out.write(json.dumps({**example, "subject": f"subject-{i % subjects}"}, ensure_ascii=False) + "\n")
    return files["test"], files["dev"]


def _suite(base: str, adapter: str, data: Path, dev: Path, shots: int, batch: int | None, verify: int) -> tuple:
    """(the suite, its file): KMMLU's lm-evaluation-harness task as a harness choice suite."""
    from harness.config import SuiteConfig, load_config

    raw = {
        "name": "kmmlu_like",
        "task": "choice",
        "dataset": {"path": str(data)},
        "choice": {
            "context": "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n정답：",
            "choices": list(LETTERS),
            "gold": "answer - 1",
            "subject": "subject",
        },
        "metrics": ["acc"],
        "prompt": {"fewshot": {"k": shots, **({"path": str(dev)} if shots else {})}},
        "models": {"base": base, "adapters": {"adapter": adapter}},
        "bootstrap": {"resamples": 100},
        "verify": verify,
        **({"batch_size": batch} if batch else {}),
    }
    path = data.parent / "kmmlu_like.yaml"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return load_config(SuiteConfig, path, {}), str(path)


def harness_choice(
    base, adapter, data: Path, dev: Path, work: Path, shots: int, batch: int | None, verify: int
) -> dict:
    """`harness eval` of the choice suite, base and adapter columns, as the command runs it."""
    from transformers import AutoTokenizer

    from harness.evaluate.run import run_eval
    from harness.model.loading import resolve_model_ref

    suite, source = _suite(base, adapter, data, dev, shots, batch, verify)
    started = time.time()
    result = run_eval(suite, source, work / "runs", run_id=f"choice-{int(started)}", log=print)
    wall = time.time() - started
    records = {
        name: [json.loads(line) for line in (result.run_dir / "records" / f"{name}.jsonl").read_text().splitlines()]
        for name in ("base", "adapter")
    }
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_ref(base))
    encoded = [tokenizer(r["prompt"])["input_ids"] for r in records["base"]]
    tokens = sum(len(ids) for ids in encoded)
    out = {"engine": result.results.get("engine"), "wall_s": wall, "peak_memory_bytes": peak()}
    out["computed_context_tokens"] = computed_tokens(encoded)
    for name, t in result.results["throughput"].items():
        out[name] = _rates(len(records[name]), tokens, t["wall_s"])
        out[name]["acc"] = result.results["metrics"][name]["acc"]["value"]
    out["verify"] = {name: v["summary"] for name, v in result.results.get("verify", {}).items()}
    out["context_tokens"], out["samples"] = tokens, len(records["base"])
    out["_records"] = records
    return out


def computed_tokens(encoded: list[list[int]]) -> int:
    """Context tokens left to compute once shared prefixes are computed once (harness.engine.prefixes'
    plan over all contexts; padding and the cut into batches not counted)."""
    from harness.engine import prefix_choices, prefixes

    _, shared = prefixes.plan(encoded, weak=prefix_choices.WEAK_LINK)
    heads = {tuple(ids[:k]) for ids, k in zip(encoded, shared) if k}
    return sum(len(h) for h in heads) + sum(len(ids) - k for ids, k in zip(encoded, shared))


def _rates(samples: int, tokens: int, wall: float) -> dict:
    return {
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(LETTERS) * samples / wall, 2),
        "context_tokens_per_s": round(tokens / wall, 1),
    }


def lm_eval_choice(
    base: str,
    adapter: str,
    records: dict,
    tokens: int,
    batches: list,
    out: dict,
    save=None,
    columns=("base", "adapter"),
) -> dict:
    """lm-evaluation-harness's HFLM.loglikelihood on the same 4-bit model object (then a PeftModel of
    it) and the contexts harness recorded; accuracy and agreement with harness's choices. Each
    configuration lands in `out` (saved) as it finishes; one that fails records its error."""
    from peft import PeftModel

    model, tokenizer, _ = _load_4bit(base)
    for name in columns:
        if name == "adapter":
            model = PeftModel.from_pretrained(model, adapter).eval()
        for batch in batches if name == "base" else batches[:1]:
            free()  # each configuration's own peak
            try:
                out[f"{name}_batch_{batch}"] = _lm_eval_run(model, tokenizer, records[name], tokens, batch)
            except Exception as exc:
                out[f"{name}_batch_{batch}"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            print(f"[lm_eval_hf {name} batch {batch}] {json.dumps(out[f'{name}_batch_{batch}'])}", flush=True)
            if save:
                save()
    return out


def _lm_eval_run(model, tokenizer, ours: list[dict], tokens: int, batch) -> dict:
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch, device=device)
    requests = [
        Instance("loglikelihood", {}, (r["prompt"], f" {c}"), i) for r in ours for i, c in enumerate(r["choices"])
    ]
    started = time.time()
    answers = lm.loglikelihood(requests, disable_tqdm=True)
    _sync()
    figures = _rates(len(ours), tokens, time.time() - started)
    lls = [[ll for ll, _ in answers[i : i + len(LETTERS)]] for i in range(0, len(answers), len(LETTERS))]
    predictions = [max(range(len(x)), key=x.__getitem__) for x in lls]
    figures["acc"] = 100 * sum(p in r["gold"] for p, r in zip(predictions, ours)) / len(ours)
    figures["same_predictions_as_harness"] = sum(r["choices"][p] == r["prediction"] for p, r in zip(predictions, ours))
    figures["max_abs_loglikelihood_difference"] = max(
        abs(a - b) for x, r in zip(lls, ours) for a, b in zip(x, r["loglikelihoods"])
    )
    figures.update(batch_size=batch, peak_memory_bytes=peak())
    return figures


def compute_limit(base: str, tokens: int) -> dict:
    """The bf16 compute limit of the context tokens: 2 × parameters × tokens / the GPU's dense bf16 peak."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from harness.model.loading import resolve_model_ref

    with torch.device("meta"):
        params = sum(
            p.numel()
            for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model_ref(base))).parameters()
        )
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    flops = next((v for k, v in BF16_PEAK.items() if k in name), None)
    out = {"parameters": params, "device": name, "bf16_peak_flops": flops}
    if flops:
        out["limit_s"] = 2 * params * tokens / flops
        out["context_tokens_per_s_limit"] = flops / (2 * params)
    return out


def bench_choice(base: str, adapter: str, data: str, work: Path, args, figures: dict, save=None) -> dict:
    """Fills `figures` (the caller's dict, saved after every row) and returns it. `args`: gpu.py's
    (smoke, batch_size, choice_samples, shots, verify, peer_batch, no_peers: harness rows only,
    timeline: the base column's timeline instead of the rows, see choice_timeline)."""
    samples, shots = (8, 2) if args.smoke else (args.choice_samples, args.shots)
    path, dev = kmmlu_like(data, work, samples, args.choice_subjects)
    figures.update(
        samples=samples,
        shots=shots,
        subjects=args.choice_subjects,
        data="KorQuAD dev → KMMLU-shaped 4-choice questions; few-shot from a dev pool of 5 per subject",
    )
    if args.timeline:
        from choice_timeline import choice_timeline

        suite, source = _suite(base, adapter, path, dev, shots, args.batch_size, 0)
        return choice_timeline(suite, source, work, figures.setdefault("timeline", {}))
    # The process's first forwards pay one-time costs (Triton compiling Liger's kernels, cuDNN's
    # attention plans): a first eval, recorded as the cold row, leaves the second as a user's next.
    settings = (base, adapter, path, dev, work, shots, args.batch_size)
    row(figures, "harness_eval_cold", harness_choice, *settings, 0, save=save)
    ours = row(figures, "harness_eval", harness_choice, *settings, args.verify, save=save)
    if "_records" not in ours or args.no_peers:
        return figures
    figures["compute_limit"] = compute_limit(base, ours["context_tokens"])
    figures["compute_limit_computed_tokens"] = compute_limit(base, ours["computed_context_tokens"])
    # On a CPU "auto" alone takes a minute: it tries batch 64 at the longest length five times.
    batches = [4] if args.smoke else [args.peer_batch] if args.fixed_peer_only else ["auto", args.peer_batch]
    columns = ("base",) if args.fixed_peer_only else ("base", "adapter")
    peer = figures.setdefault("lm_eval_hf", {})  # filled configuration by configuration
    records, tokens = ours["_records"], ours["context_tokens"]
    row(figures, "lm_eval_hf", lm_eval_choice, base, adapter, records, tokens, batches, peer, save, columns, save=save)
    return figures
