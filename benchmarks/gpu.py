"""GPU figures: harness beside the plain libraries, same model, same data, one process.

    python benchmarks/gpu.py train [--korquad PATH]   # harness train vs a plain TRL SFTTrainer script
    python benchmarks/gpu.py eval  [--korquad PATH]   # harness eval vs lm-evaluation-harness's HF backend
    python benchmarks/gpu.py choice [--shots 5]       # multiple choice (KMMLU-shaped): harness eval vs lm-eval HF
    python benchmarks/gpu.py choice --timeline        # where its base column's time goes (no peers)
    python benchmarks/gpu.py all --smoke               # CPU smoke test on tiny:llama-ko (keeps this from rotting)
    python benchmarks/gpu.py scale [--korquad PATH]   # harness eval and train on 1 GPU and on 2 (accelerate launch)
    python benchmarks/gpu.py attention                # a decoding step's attention: harness's kernel vs SDPA's
    python benchmarks/gpu.py shares [--korquad PATH]  # one GPU: each rank's share of an eval in turn, vs one process
    python benchmarks/gpu.py seq2seq [--shape bart-large|t5-base]  # an encoder-decoder: harness vs Seq2SeqTrainer, generate

The model has Llama-2-7B's shape with random weights (the cost of a step does not depend on
their values), and a 32,000-token byte-level BPE trained on the KorQuAD passages so prompts
have realistic lengths. Figures go to stdout and, as JSON, to $OUT/bench-*.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_attention import bench_attention
from bench_choice import bench_choice
from bench_decode import bench_decode
from bench_eval import bench_eval, random_adapter
from bench_scale import bench_scale
from bench_seq2seq import SHAPES, bench_seq2seq
from bench_shares import bench_shares
from bench_train import bench_train
from common import build_model, korquad_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "what",
        choices=["train", "eval", "decode", "all", "scale", "attention", "shares", "seq2seq", "choice"],
        help="scale is not part of all: it needs --processes GPUs (or CPU gloo processes with "
        "--smoke); nor are attention (no model, a CUDA GPU), shares, seq2seq (its own model) and choice",
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="bart-large", help="seq2seq: the model's shape")
    parser.add_argument("--smoke", action="store_true", help="tiny:llama-ko, a few steps and prompts (CPU or GPU)")
    parser.add_argument("--korquad", help="KorQuAD 1.0 dev JSON")
    parser.add_argument("--work", default="/tmp/harness-bench", help="scratch directory (model, adapters, runs)")
    parser.add_argument("--harness-first", action="store_true", help="train: run harness before the peers")
    parser.add_argument("--eval-samples", type=int, default=1024, help="eval: KorQuAD dev questions (default 1024)")
    parser.add_argument(
        "--questions",
        choices=["sample", "first", "all"],
        default="sample",
        help="eval: which dev questions harness runs: a seeded sample of --eval-samples (default), "
        "the first --eval-samples in file order (lm-evaluation-harness's --limit), or all; "
        "the peers take the first --eval-samples of the same prompts",
    )
    parser.add_argument(
        "--peer-samples",
        type=int,
        default=128,
        help="eval: questions for the slow 4-bit peers (lm-evaluation-harness, PeftModel generate)",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="harness paths only (the one-GPU baseline of scaling runs)"
    )
    parser.add_argument("--batch-size", type=int, help="harness eval batch size (default: from the hardware)")
    parser.add_argument("--verify", type=int, default=16, help="eval: harness eval --verify N (default 16)")
    parser.add_argument("--choice-samples", type=int, default=1536, help="choice: KMMLU-shaped questions")
    parser.add_argument(
        "--shots", type=int, default=5, help="choice: solved examples before each question (0: lm-eval's kmmlu default)"
    )
    parser.add_argument(
        "--choice-subjects", type=int, default=2, help="choice: subjects, each with a dev pool of 5 few-shot examples"
    )
    parser.add_argument(
        "--peer-batch", type=int, default=64, help="choice: lm-evaluation-harness's fixed batch (beside auto)"
    )
    parser.add_argument(
        "--fixed-peer-only",
        action="store_true",
        help="choice: lm-evaluation-harness's base at --peer-batch alone (no batch auto, no PeftModel)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="choice: instead of the rows, where the base column's time goes (events, and CUDA kernels)",
    )
    parser.add_argument("--processes", type=int, default=2, help="scale: processes (GPUs) of the data-parallel runs")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.what == "attention":
        figures = {"versions": _versions(), "command": " ".join(sys.argv), "attention": {}}
        bench_attention(figures["attention"])
        if os.environ.get("OUT"):
            Path(os.environ["OUT"], "bench-attention.json").write_text(json.dumps(figures, indent=2))
        return
    data = korquad_path(args.korquad)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "seq2seq":
        figures = {"versions": _versions(), "command": " ".join(sys.argv)}
        figures["seq2seq"] = bench_seq2seq(data, work, args.shape, args.smoke)
        if os.environ.get("OUT"):
            Path(os.environ["OUT"], "bench-seq2seq.json").write_text(json.dumps(figures, indent=2, default=str))
        return
    started = time.time()
    base = "tiny:llama-ko" if args.smoke else build_model(work / "llama2-7b-shape", data)
    figures: dict = {"versions": _versions(), "command": " ".join(sys.argv), "build_s": time.time() - started}
    out = Path(os.environ["OUT"], f"bench-{args.what}.json") if os.environ.get("OUT") else None

    def save() -> None:
        if out is not None:
            out.write_text(json.dumps(figures, indent=2))

    if args.what in ("eval", "decode", "all", "scale", "shares", "choice"):
        adapter = random_adapter(base, work / "random-adapter")
    if args.what in ("eval", "all"):
        figures["eval"] = {}
        bench_eval(
            base,
            adapter,
            data,
            work,
            args.smoke,
            args.batch_size,
            args.eval_samples,
            not args.no_peers,
            save=save,
            peer_samples=args.peer_samples,
            figures=figures["eval"],
            verify=args.verify,
            questions=args.questions,
        )
        save()
    if args.what == "choice":
        figures["choice"] = {}
        bench_choice(base, adapter, data, work, args, figures["choice"], save=save)
        save()
    if args.what in ("decode", "all"):
        figures["decode"] = {}
        bench_decode(base, adapter, data, work, args.smoke, save=save, figures=figures["decode"])
        save()
    if args.what == "scale":
        figures["scale"] = {}
        bench_scale(
            base,
            adapter,
            data,
            work,
            args.smoke,
            args.eval_samples,
            args.processes,
            figures=figures["scale"],
            save=save,
        )
    if args.what == "shares":
        figures["shares"] = bench_shares(base, adapter, data, args.smoke, args.eval_samples)
        save()
    if args.what in ("train", "all"):
        figures["train"] = bench_train(base, data, work, args.smoke, args.harness_first, not args.no_peers)
        save()
    print(json.dumps({k: v for k, v in figures.items() if k != "versions"}, indent=2, default=str), flush=True)


def _versions() -> dict:
    from harness.runtime.env import detect

    env = detect()
    return {"device": env.device_name, **env.versions}


if __name__ == "__main__":
    main()
