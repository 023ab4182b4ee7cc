"""Plain helpers every test folder shares: one torch thread, and stderr without progress bars."""

from __future__ import annotations

import contextlib
import re

# A tqdm bar as a terminal shows it ("base: 40%|████ | 4/10 ..."): progress, not a message.
TQDM_LINE = re.compile(r"^[^|]*:\s*\d+%\|.*\|")


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread: the machine's 2 cores are shared, and with 2 threads per
    process oversubscription makes the tiny model 10-40x slower (OMP spin waits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def harness(*argv) -> tuple[int, str, str]:
    """`harness ARGV` in-process: (exit code, stdout, stderr)."""
    import io

    from harness.commands.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def read_json(path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def message_lines(stderr: str) -> list[str]:
    """stderr's lines as a terminal leaves them visible, without progress bars."""
    lines = []
    for raw in stderr.splitlines():
        shown = raw.split("\r")[-1].strip()
        if shown and not TQDM_LINE.match(shown):
            lines.append(shown)
    return lines


def first_target_logits(base_path: str, adapter_dir, text: str):
    """(base, base + adapter) logits of an encoder-decoder's first target token for `text` as the
    source (with the tokenizer's special tokens, at most 256), its decoder fed the start token alone:
    the 4-bit NF4 base as the adapter was trained, loaded with transformers and peft alone."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForSeq2SeqLM.from_pretrained(base_path, dtype=torch.float32, quantization_config=quant)
    for module in model.modules():  # bitsandbytes' exact float32 path (see zoo_helpers.plain_4bit_layout)
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    ids = tokenizer(text, truncation=True, max_length=256, return_tensors="pt").input_ids
    start = torch.tensor([[model.config.decoder_start_token_id]])
    with torch.inference_mode(), one_torch_thread():
        base_logits = model(input_ids=ids, decoder_input_ids=start).logits[0, -1].float()
        tuned = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
        logits = tuned(input_ids=ids, decoder_input_ids=start).logits[0, -1].float()
    return base_logits, logits
