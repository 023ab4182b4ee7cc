"""GPU figures: harness beside the plain libraries, same model, same data, one process.

    python benchmarks/gpu.py train [--korquad PATH]   # harness train vs a plain TRL SFTTrainer script
    python benchmarks/gpu.py eval  [--korquad PATH]   # harness eval vs lm-evaluation-harness's HF backend
    python benchmarks/gpu.py all --smoke               # CPU smoke test on tiny:llama-ko (keeps this from rotting)

The model has Llama-2-7B's shape with random weights (the cost of a step does not depend on
their values), and a 32,000-token byte-level BPE trained on the KorQuAD passages so prompts
have realistic lengths. Figures go to stdout and, as JSON, to $OUT/bench-*.json when $OUT is set.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
SEED_LORA = dict(r=16, alpha=32, dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def korquad_path(arg: str | None) -> str:
    for candidate in (arg, os.environ.get("KORQUAD_DEV"), ROOT / ".bench" / "KorQuAD_v1.0_dev.json",
                      ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    sys.exit("KorQuAD dev not found: pass --korquad PATH or set KORQUAD_DEV")


def build_model(directory: Path, data: str) -> str:
    """A Llama-2-7B-shaped checkpoint with random bf16 weights and a KorQuAD-trained tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (directory / "config.json").is_file():
        return str(directory)
    started = time.time()
    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    texts = [p["context"] for a in doc["data"] for p in a["paragraphs"]]
    texts += [q["question"] for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=LLAMA2_7B["vocab_size"], special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>", padding_side="left")
    config = LlamaConfig(**LLAMA2_7B, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    _free()
    print(f"built 7B-shaped model in {time.time() - started:.0f} s → {directory}", flush=True)
    return str(directory)


def _free():
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def _device_map():
    import torch

    return {"": 0} if torch.cuda.is_available() else None


def _peak() -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def train_config(base: str, data: str, out: Path, smoke: bool):
    from harness.config import TrainConfig, validate

    steps, batch, accum = (4, 2, 2) if smoke else (20, 4, 4)
    return validate(TrainConfig, {
        "name": "bench", "base": base, "output_dir": str(out),
        "quantization": {"mode": "nf4", "double_quant": True, "compute_dtype": "auto"},
        "lora": SEED_LORA,
        "data": {"path": data, "template": "qa-ko", "validation_fraction": 0, "max_length": 512,
                 "limit": steps * batch * accum},
        "training": {"max_steps": steps, "batch_size": batch, "gradient_accumulation": accum,
                     "learning_rate": 2e-4, "warmup": 0, "logging_steps": 1, "save_steps": 10_000,
                     "optimizer": "adamw_torch" if smoke else "paged_adamw_8bit",
                     "gradient_checkpointing": not smoke, "seed": 42},
    }, "benchmark")


def plain_trl(config, rows) -> dict:
    """What a careful user writes by hand with transformers + peft + TRL (the seed settings)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from harness.models import resolve_model_ref

    path = resolve_model_ref(config.base)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, device_map={"": 0} if cuda else None,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype))
    t = config.training
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(t.gradient_checkpointing))
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=SEED_LORA["target_modules"],
                      task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(Path(config.output_dir).with_name("plain-trl")), max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate, optim=t.optimizer, gradient_checkpointing=bool(t.gradient_checkpointing),
        bf16=cuda, use_cpu=not cuda, logging_steps=1, save_strategy="no", report_to="none", seed=t.seed,
        max_length=512, include_num_input_tokens_seen="non_padding", lr_scheduler_type=t.scheduler,
        max_grad_norm=t.max_grad_norm,
    )
    _free()
    started = time.time()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora)
    trainer.train()
    wall = time.time() - started
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens = int(trainer.state.num_input_tokens_seen)
    result = {"tokens_per_second": tokens / wall, "peak_memory_bytes": _peak(), "loss_last": losses[-1],
              "tokens": tokens, "wall_s": wall}
    del trainer, model
    _free()
    return result


def bench_train(base: str, data: str, work: Path, smoke: bool, harness_first: bool = False, peers: bool = True) -> dict:
    import shutil

    from harness.train import build_examples, train

    config = train_config(base, data, work / "harness-adapter", smoke)
    shutil.rmtree(config.output_dir, ignore_errors=True)
    rows, _, _ = build_examples(config)
    # Whichever runs first also pays for CUDA/cuBLAS warm-up: --harness-first swaps the order.
    peer = None
    if peers and not harness_first:
        peer = plain_trl(config, rows)
        _free()
    record = train(config, overwrite=True, log=lambda m: print(m, flush=True))
    if peers and harness_first:
        _free()
        peer = plain_trl(config, rows)
    losses = [h["loss"] for h in record["history"] if "loss" in h]
    ours = {"tokens_per_second": record["tokens_per_second"], "peak_memory_bytes": record["peak_memory_bytes"],
            "loss_last": losses[-1], "tokens": record["tokens_seen"], "wall_s": record["train_runtime_s"]}
    _free()
    return {"plain_trl": peer, "harness_train": ours, "adapter": config.output_dir, "harness_first": harness_first}


def random_adapter(base: str, out: Path) -> str:
    """A LoRA with non-zero weights (the cost of applying it does not depend on the values)."""
    if (out / "adapter_config.json").is_file():
        return str(out)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.models import resolve_model_ref

    model = AutoModelForCausalLM.from_pretrained(resolve_model_ref(base), dtype="auto", device_map=_device_map())
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=SEED_LORA["target_modules"],
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(out)
    del model, peft_model
    _free()
    return str(out)


def bench_eval(base: str, adapter: str, data: str, work: Path, smoke: bool, batch: int | None,
               samples: int = 128, peers: bool = True) -> dict:
    from harness.config import SuiteConfig, load_config
    from harness.evaluation import run_eval

    n, new = (8, 8) if smoke else (samples, 32)
    overrides = {"dataset.path": data, "dataset.path_env": None, "dataset.limit": n, "models.base": base,
                 "generation.max_new_tokens": new, "generation.min_new_tokens": new, "generation.stop": [],
                 "bootstrap.resamples": 200}
    if batch:
        overrides["batch_size"] = batch
    suite = load_config(SuiteConfig, ROOT / "suites" / "korquad.yaml", overrides)
    suite.models.adapters = {"adapter": adapter}
    _free()
    started = time.time()
    result = run_eval(suite, "suites/korquad.yaml", work / "runs", run_id=f"bench-{int(started)}")
    wall = time.time() - started
    ours = {name: t["samples_per_s"] for name, t in result.results["throughput"].items()}
    ours["wall_s_including_load"] = wall
    ours["peak_memory_bytes"] = _peak()
    prompts = [json.loads(line)["prompt"] for line in
               (result.run_dir / "records" / "adapter.jsonl").read_text(encoding="utf-8").splitlines()]
    _free()
    peer = lm_eval_hf(base, adapter, prompts, new, smoke) if peers else None
    return {"harness_eval": ours, "lm_eval_hf_batch16": peer, "prompts": len(prompts), "new_tokens": new}


def lm_eval_hf(base: str, adapter: str, prompts: list[str], new: int, smoke: bool) -> dict:
    """lm-evaluation-harness's HF backend at batch 16 on the same 4-bit + PeftModel and prompts."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from harness.models import resolve_model_ref

    path = resolve_model_ref(base)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, device_map={"": 0} if cuda else None,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype))
    model = PeftModel.from_pretrained(model, adapter).eval()
    lm = HFLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(path), batch_size=16,
              device="cuda" if cuda else "cpu")
    kwargs = {"until": ["\n\n\n\n"], "max_gen_toks": new, "min_new_tokens": new, "do_sample": False}
    requests = [Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)]
    started = time.time()
    lm.generate_until(requests)
    wall = time.time() - started
    result = {"prompts_per_s": len(prompts) / wall, "wall_s": wall, "peak_memory_bytes": _peak()}
    del lm, model
    _free()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "eval", "all"])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny:llama-ko, a few steps and prompts")
    parser.add_argument("--korquad", help="KorQuAD 1.0 dev JSON")
    parser.add_argument("--work", default="/tmp/harness-bench", help="scratch directory (model, adapters, runs)")
    parser.add_argument("--harness-first", action="store_true", help="train: run harness before the peer")
    parser.add_argument("--eval-samples", type=int, default=128, help="eval: KorQuAD dev questions (default 128)")
    parser.add_argument("--no-peers", action="store_true", help="harness paths only (the one-GPU baseline of scaling runs)")
    parser.add_argument("--batch-size", type=int, help="harness eval batch size (default: from the hardware)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = korquad_path(args.korquad)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = "tiny:llama-ko" if args.smoke else build_model(work / "llama2-7b-shape", data)
    figures: dict = {"versions": _versions()}
    if args.what in ("eval", "all"):
        adapter = random_adapter(base, work / "random-adapter")
        figures["eval"] = bench_eval(base, adapter, data, work, args.smoke, args.batch_size,
                                    args.eval_samples, not args.no_peers)
        print(json.dumps(figures["eval"], indent=2), flush=True)
    if args.what in ("train", "all"):
        figures["train"] = bench_train(base, data, work, args.smoke, args.harness_first, not args.no_peers)
        print(json.dumps(figures["train"], indent=2), flush=True)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], f"bench-{args.what}.json").write_text(json.dumps(figures, indent=2))


def _versions() -> dict:
    from harness.env import detect

    env = detect()
    return {"device": env.device_name, **env.versions}


if __name__ == "__main__":
    main()
