"""Encoder-decoder rows: a real-size random-weight BART-large or T5-base through harness train and
harness eval, beside the plain libraries' scripts on the same model, data and settings.

Data: lead-sentence summarization built from KorQuAD dev passages (source: the passage, target: its
first sentence), as JSONL with `document` and `summary`, so lengths are those of real Korean text.

(a) plain_seq2seq_trainer  transformers' Seq2SeqTrainer + peft on the 4-bit base, DataCollatorForSeq2Seq
(b) harness_train          harness train with the same settings
(c) plain_generate         4-bit base + PeftModel, `generate` over length-sorted batches of 32 and of 64
(d) harness_eval           harness eval (summarization task) of base and adapter
(e) harness_train_find     harness train with `batch_size: find` over a large global batch (auto's
                           micro-batch × 32): the micro-batches it probed, which ran out of memory, the one chosen

Training tokens/s count the source and target tokens of every example (each is seen once); generation
tokens/s count new tokens (min_new_tokens = max_new_tokens, so every row makes the same number).
Peak memory is the GPU's peak allocated, reset between rows.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from bench_eval import row as run_row
from common import free, peak, seed_training, train_tokenizer

SHAPES = {
    "bart-large": (
        "BartConfig",
        "BartForConditionalGeneration",
        dict(
            d_model=1024,
            encoder_layers=12,
            decoder_layers=12,
            encoder_attention_heads=16,
            decoder_attention_heads=16,
            encoder_ffn_dim=4096,
            decoder_ffn_dim=4096,
            max_position_embeddings=1024,
        ),
        ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    ),
    "t5-base": (
        "T5Config",
        "T5ForConditionalGeneration",
        dict(d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12),
        ["q", "k", "v", "o", "wi", "wo"],
    ),
}
STEPS, BATCH, ACCUMULATION, SOURCE, TARGET = 30, 8, 2, 512, 64
EVAL_SAMPLES, NEW_TOKENS = 256, 64


def build_seq2seq(directory: Path, data: str, shape: str) -> str:
    """A random bf16 encoder-decoder of `shape` with a KorQuAD-trained 32,000-token tokenizer."""
    import torch
    import transformers
    from transformers import GenerationConfig

    if (directory / "config.json").is_file():
        return str(directory)
    config_class, model_class, sizes, _targets = SHAPES[shape]
    tokenizer = train_tokenizer(data, padding_side="right", adds_eos=True)
    ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    start = ids["pad_token_id"] if shape.startswith("t5") else ids["eos_token_id"]
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer), **sizes, **ids, decoder_start_token_id=start, tie_word_embeddings=True
    )
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = getattr(transformers, model_class)(config)
    torch.set_default_dtype(torch.float32)
    model.generation_config = GenerationConfig(**ids, decoder_start_token_id=start, do_sample=False)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    print(f"built {shape}-shaped model ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M) → {directory}")
    del model
    free()
    return str(directory)


def lead_sentences(data: str, out: Path, n: int) -> str:
    """JSONL of KorQuAD passages and their first sentence."""
    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    rows = []
    for article in doc["data"]:
        for paragraph in article["paragraphs"]:
            text = paragraph["context"].strip()
            first = re.split(r"(?<=[.?!])\s", text, maxsplit=1)[0]
            if 20 <= len(first) < len(text):
                rows.append({"id": f"lead-{len(rows)}", "document": text, "summary": first})
    rows = rows[:n]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(out)


def train_settings(base: str, data: str, out: Path, shape: str, smoke: bool) -> dict:
    steps, batch, accumulation = (3, 2, 1) if smoke else (STEPS, BATCH, ACCUMULATION)
    return {
        "name": "bench-seq2seq",
        "base": base,
        "output_dir": str(out),
        "quantization": {"mode": "nf4", "double_quant": True, "compute_dtype": "auto"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": SHAPES[shape][3]},
        "data": {
            "path": data,
            "template": "summarize-ko",
            "validation_fraction": 0,
            "max_source_length": SOURCE,
            "max_target_length": TARGET,
            "limit": steps * batch * accumulation,
        },
        "training": seed_training(steps, batch, accumulation, smoke),
    }


def example_tokens(config, tokenizer) -> tuple[list[dict], int]:
    """The training examples as harness builds them, and their source + target tokens after the limits."""
    from harness.train.data import build_examples

    rows, _, _ = build_examples(config)
    tokens = 0
    for row in rows:
        tokens += min(len(tokenizer(row["prompt"]).input_ids), SOURCE)
        tokens += min(len(tokenizer(row["completion"]).input_ids), TARGET)
    return rows, tokens


def harness_train(config, tokens: int) -> dict:
    from harness.train.recipe import train

    free()
    started = time.time()
    record = train(config, overwrite=True)
    wall = time.time() - started
    return {
        "tokens_per_second_record": record.get("tokens_per_second"),
        "example_tokens_per_s_wall": tokens / record["train_runtime_s"],
        "peak_memory_bytes": record.get("peak_memory_bytes"),
        "train_runtime_s": record["train_runtime_s"],
        "wall_with_load_s": wall,
        "last_loss": [h["loss"] for h in record["history"] if "loss" in h][-1],
        "plan": record.get("plan"),
    }


def plain_trainer(config, rows: list[dict], tokens: int, steps: int | None = None) -> dict:
    """The script a careful user writes: 4-bit base, peft, Seq2SeqTrainer with the same settings.
    `steps`: fewer steps than the config's (the warm-up)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    free()
    t, lora = config.training, config.lora
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    bf16 = torch.cuda.is_available()
    dtype = torch.bfloat16 if bf16 else torch.float32
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
    )
    model = AutoModelForSeq2SeqLM.from_pretrained(
        config.base, quantization_config=quant, dtype=dtype, device_map={"": 0} if bf16 else None
    )
    started = time.time()
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.gradient_checkpointing is True)
    model = get_peft_model(
        model,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="SEQ_2_SEQ_LM",
        ),
    )

    def tokenize(row):
        features = tokenizer(row["prompt"], max_length=SOURCE, truncation=True)
        features["labels"] = tokenizer(text_target=row["completion"], max_length=TARGET, truncation=True).input_ids
        return features

    dataset = Dataset.from_list(rows).map(tokenize, remove_columns=list(rows[0]))
    args = Seq2SeqTrainingArguments(
        output_dir=str(Path(config.output_dir).parent / "plain-checkpoints"),
        max_steps=steps or t.max_steps,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        optim=t.optimizer,
        gradient_checkpointing=t.gradient_checkpointing is True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=bf16,
        use_cpu=not bf16,
        report_to="none",
        seed=t.seed,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
    )
    trainer.train()
    wall = time.time() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = {"example_tokens_per_s_wall": tokens / wall, "wall_s": wall, "peak_memory_bytes": peak()}
    result["last_loss"] = losses[-1] if losses else None
    del trainer, model
    free()
    return result


def harness_eval(base: str, adapter: str, data: str, work: Path, n: int) -> dict:
    from common import ROOT

    from harness.config import SuiteConfig, load_config
    from harness.evaluate.run import run_eval

    suite = load_config(
        SuiteConfig,
        ROOT / "suites" / "summarization_dialogue_ko.yaml",
        {
            "dataset.path": data,
            "dataset.fields": {"document": "document"},
            "dataset.limit": n,
            "models.base": base,
            "generation.max_new_tokens": NEW_TOKENS,
            "generation.min_new_tokens": NEW_TOKENS,
            "generation.repetition_penalty": 1.0,
            "generation.stop": [],
            # MeCab's dictionary would not fit beside the GPU machine's wheels; the CPU tests score MeCab ROUGE.
            "metrics": [{"name": m, "tokenizer": "whitespace"} for m in ("rouge1", "rouge2", "rougeL")],
            "bootstrap.resamples": 200,
        },
    )
    suite.models.adapters = {"adapter": adapter}
    free()
    started = time.time()
    result = run_eval(suite, "bench-seq2seq", work / "runs", run_id=f"bench-seq2seq-{int(started)}", log=print)
    throughput = result.results["throughput"]
    records = (result.run_dir / "records" / "adapter.jsonl").read_text(encoding="utf-8").splitlines()
    return {
        "engine": result.results.get("engine"),
        "wall_s": time.time() - started,
        "peak_memory_bytes": peak(),
        "new_tokens_per_s": {name: n * NEW_TOKENS / c["wall_s"] for name, c in throughput.items()},
        "prompts_per_s": {name: c["samples_per_s"] for name, c in throughput.items()},
        "metrics": {m: {k: v["value"] for k, v in ms.items()} for m, ms in result.results["metrics"].items()},
        "_prompts": [json.loads(line)["prompt"] for line in records],
    }


def plain_generate(base: str, adapter: str, prompts: list[str], batch: int) -> dict:
    """4-bit base + PeftModel, `generate` over batches of harness's prompts sorted by length."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BitsAndBytesConfig

    free()
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
    )
    model = AutoModelForSeq2SeqLM.from_pretrained(
        base, quantization_config=quant, dtype=dtype, device_map={"": 0} if cuda else None
    )
    model = PeftModel.from_pretrained(model, adapter).eval()
    tokenizer = AutoTokenizer.from_pretrained(base)
    prompts = sorted(prompts, key=len, reverse=True)
    started = time.time()
    for i in range(0, len(prompts), batch):
        enc = tokenizer(prompts[i : i + batch], return_tensors="pt", padding=True)
        with torch.inference_mode():
            model.generate(
                **enc.to(model.device), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
            )
    if cuda:
        torch.cuda.synchronize()
    wall = time.time() - started
    result = {"new_tokens_per_s": len(prompts) * NEW_TOKENS / wall, "wall_s": wall, "peak_memory_bytes": peak()}
    del model
    free()
    return result


def bench_seq2seq(data: str, work: Path, shape: str, smoke: bool) -> dict:
    from harness.config import TrainConfig, validate

    tiny = "tiny:t5-ko" if shape.startswith("t5") else "tiny:bart-ko"
    base = tiny if smoke else build_seq2seq(work / f"{shape}-shape", data, shape)
    if smoke:
        from harness.model.loading import resolve_model_ref

        base = resolve_model_ref(base)
    n = 8 if smoke else EVAL_SAMPLES
    summaries = lead_sentences(data, work / "lead.jsonl", 4000)
    config = validate(TrainConfig, train_settings(base, summaries, work / "adapter", shape, smoke), "benchmark")
    from transformers import AutoTokenizer

    rows, tokens = example_tokens(config, AutoTokenizer.from_pretrained(base))
    figures: dict = {"shape": shape, "examples": len(rows), "example_tokens": tokens}
    prompts: list[str] = []

    def evaluate() -> dict:
        result = harness_eval(base, config.output_dir, summaries, work, n)
        prompts.extend(result.pop("_prompts"))
        return result

    settings = train_settings(base, summaries, work / "adapter-find", shape, smoke)
    settings["training"].update(batch_size="find", gradient_accumulation=2 if smoke else 32, max_steps=2)
    find = validate(TrainConfig, settings, "benchmark")
    planned = [
        # Two thrown-away steps first: the process's first training pays for CUDA's and bitsandbytes' start.
        ("warm_up", lambda: plain_trainer(config, rows[:32], 0, steps=2)),
        ("plain_seq2seq_trainer", lambda: plain_trainer(config, rows, tokens)),
        ("harness_train", lambda: harness_train(config, tokens)),
        ("harness_eval", evaluate),
        ("plain_generate", lambda: plain_generate(base, config.output_dir, prompts, 32)),
        ("plain_generate_batch64", lambda: plain_generate(base, config.output_dir, prompts, 64)),
        ("harness_train_find", lambda: harness_train(find, tokens)),
    ]
    for name, fn in planned:
        print(f"bench seq2seq: {name}", flush=True)
        run_row(figures, name, fn)
    print(table(figures), flush=True)
    return figures


def table(figures: dict) -> str:
    def cell(row: str, key: str) -> str:
        value = figures.get(row, {}).get(key)
        if isinstance(value, dict):
            value = value.get("adapter")
        if key == "peak_memory_bytes" and isinstance(value, int):
            return f"{value / 2**30:.2f} GiB"
        return f"{value:,.0f}" if isinstance(value, float) else str(value)

    lines = [f"{'row':24} {'tokens/s':>12} {'peak memory':>12}"]
    for row, key in (
        ("plain_seq2seq_trainer", "example_tokens_per_s_wall"),
        ("harness_train", "example_tokens_per_s_wall"),
        ("plain_generate", "new_tokens_per_s"),
        ("plain_generate_batch64", "new_tokens_per_s"),
        ("harness_eval", "new_tokens_per_s"),
    ):
        lines.append(f"{row:24} {cell(row, key):>12} {cell(row, 'peak_memory_bytes'):>12}")
    return "\n".join(lines)
