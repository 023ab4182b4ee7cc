"""Evaluation rows: harness eval beside lm-evaluation-harness and plain transformers paths."""
from __future__ import annotations

import json
import time
from pathlib import Path

from common import ROOT, SEED_LORA, device_map, free, peak


def random_adapter(base: str, out: Path) -> str:
    """A LoRA with non-zero weights (the cost of applying it does not depend on the values)."""
    if (out / "adapter_config.json").is_file():
        return str(out)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.models import resolve_model_ref

    model = AutoModelForCausalLM.from_pretrained(resolve_model_ref(base), dtype="auto", device_map=device_map())
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=SEED_LORA["target_modules"],
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(out)
    del model, peft_model
    free()
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
    free()
    started = time.time()
    result = run_eval(suite, "suites/korquad.yaml", work / "runs", run_id=f"bench-{int(started)}")
    wall = time.time() - started
    ours = {name: t["samples_per_s"] for name, t in result.results["throughput"].items()}
    ours["wall_s_including_load"] = wall
    ours["peak_memory_bytes"] = peak()
    prompts = [json.loads(line)["prompt"] for line in
               (result.run_dir / "records" / "adapter.jsonl").read_text(encoding="utf-8").splitlines()]
    free()
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
    result = {"prompts_per_s": len(prompts) / wall, "wall_s": wall, "peak_memory_bytes": peak()}
    del lm, model
    free()
    return result
