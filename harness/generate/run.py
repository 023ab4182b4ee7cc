"""`harness generate`: your own prompts through the base and its adapters, side by side.

Same loader (one base, adapters attached), same engine (`harness.engine.generation.generate`, batched
and length-sorted) and same generation settings as `harness eval`. Every model × generation
variant answers every prompt; each answer carries token counts, timing, the stop reason and
repetition statistics, and is appended to `--out` as soon as its batch finishes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.config.generation import Variant
from harness.data.readers import jsonl_objects, split_lines
from harness.errors import ConfigError, DataError
from harness.metrics.repetition import repetition_stats
from harness.runs.store import dumps_record
from harness.runs.tables import _width, format_table
from harness.runtime.files import write_failure


@dataclass(frozen=True)
class PromptItem:
    id: str
    text: str  # as given (or rendered from a template), before any chat template


# ----------------------------------------------------------------- reading prompts


def read_prompt_file(path: str, stdin=None) -> list[tuple[str, object]]:
    """(id, str or dict) per prompt: `.jsonl` gives objects, anything else one prompt per non-blank line;
    `-` reads standard input."""
    if path == "-":
        stream = stdin or sys.stdin
        try:
            # The bytes, where there are any, so that the encoding is ours to check rather than the locale's.
            raw = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise ConfigError(f"standard input: not UTF-8 text (byte {exc.start}); send the prompts as UTF-8") from None
        return [(f"stdin:{n}", line) for n, line in enumerate(split_lines(text), 1) if line.strip()]
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"--prompts {path}: cannot read ({exc.strerror or type(exc).__name__}); check the path"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"--prompts {path}: not UTF-8 text; save the prompts as UTF-8") from None
    if file.suffix != ".jsonl":
        return [(f"{file.name}:{n}", line) for n, line in enumerate(split_lines(text), 1) if line.strip()]
    return [(str(obj.get("id", f"{file.name}:{n}")), obj) for n, obj in jsonl_objects(text, f"--prompts {path}")]


def build_prompts(
    raw: list[tuple[str, object]], template=None, fields: dict[str, str] | None = None, where: str = "prompts"
) -> list[PromptItem]:
    """Fill `template` (a harness.data.prompts.Template) from each prompt's fields, or take the `prompt` field."""
    prompts = []
    for pid, value in raw:
        if isinstance(value, str):
            example = {"id": pid, "prompt": value, "text": value, "instruction": value}
        else:
            example = {"id": pid, **value}
            for field, column in (fields or {}).items():
                if column in value:
                    example[field] = value[column]
        if template is not None:
            text = template.render_prompt(example, where=f"prompt '{pid}'")
        elif isinstance(example.get("prompt"), str):
            text = example["prompt"]
        else:
            raise DataError(
                f"prompt '{pid}': no 'prompt' field; add one or pass --template NAME to fill a template "
                f"from the fields ({', '.join(sorted(k for k in example if k != 'id'))})"
            )
        if not text:  # nothing to continue from: a tokenizer without a start token gives no tokens at all
            raise DataError(f"prompt '{pid}' is empty; give it some text")
        prompts.append(PromptItem(id=pid, text=text))
    if not prompts:
        raise ConfigError(f"{where}: no prompts found; give --prompt TEXT, --prompts FILE or - (standard input)")
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"prompt id '{dup}' occurs twice; give every prompt its own id")
    return prompts


# ----------------------------------------------------------------- running


class JsonlAppender:
    """One JSON object per line, flushed and synced as each is written (a killed run keeps them)."""

    def __init__(self, path: str | Path | None):
        self.fh = None
        self.path = Path(path) if path else None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.fh = self.path.open("a", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--out {path}: {write_failure(self.path, exc)}") from None

    def __call__(self, record: dict) -> None:
        if self.fh is not None:
            try:
                self.fh.write(dumps_record(record) + "\n")
                self.fh.flush()
                os.fsync(self.fh.fileno())
            except OSError as exc:
                raise ConfigError(f"--out {self.path}: {write_failure(self.path, exc)}") from None

    def close(self) -> None:
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:
                pass  # the write that failed has said so


def make_record(item: PromptItem, prompt: str, model: str, variant: Variant, generated) -> dict:
    time_s = round(generated.time_s, 4)
    return {
        "prompt_id": item.id,
        "prompt": prompt,
        "model": model,
        "column": variant.label(model),
        "variant": variant.overrides,
        "settings": variant.settings.model_dump(mode="json"),
        "output": generated.output,
        "prompt_tokens": generated.prompt_tokens,
        "generated_tokens": generated.generated_tokens,
        "stop_reason": generated.stop_reason,
        "hit_limit": generated.stop_reason == "length",
        "time_s": time_s,
        "batch_size": generated.batch_size,
        "tokens_per_s": round(generated.generated_tokens / time_s, 2) if time_s > 0 else None,
        "repetition": repetition_stats(generated.output).to_dict(),
    }


def check_context(
    tokenizer, model, prompts: list[str], ids: list[str], variants: list[Variant], chat: bool = False
) -> None:
    """Refuse a too-long prompt before anything is generated (the longest max_new_tokens of the grid)."""
    from harness.engine.generation import context_length, encode_prompts

    longest = max(variants, key=lambda v: v.settings.max_new_tokens).settings
    encode_prompts(tokenizer, prompts, ids, longest, context_length(model), chat)


def run_generate(
    models,
    names: list[str],
    items: list[PromptItem],
    prompts: list[str],
    variants: list[Variant],
    batch_size: int,
    append: Callable[[dict], None],
    stream: Callable[[str], None] | None = None,
    on_column: Callable[[str], None] | None = None,
    engine: str = "auto",
    dense: bool = False,
    shard=None,
    chat: bool = False,
) -> tuple[list[dict], dict[str, float]]:
    """Every model × variant on every prompt; returns the records (also passed to `append` as they
    finish) and each model × variant's wall time.

    `stream`: with one prompt and one model × variant, the answer's text as it is generated; it
    runs on the 4-bit weights (one token at a time reads 3.5× fewer bytes from NF4 than from
    bf16). `dense`: batches run on the base dequantized once, adapters unmerged (harness.model.dense).
    `shard`: a world of processes, each running its share of the batches (`generation.generate`).
    `chat`: the prompts were rendered by the chat template (see `generation.encode_prompts`).
    """
    from harness.engine.generation import generate, generate_stream
    from harness.engine.requests import GenerationRequest, RunOptions

    tokenizer = models.base.tokenizer
    records: list[dict] = []
    wall: dict[str, float] = {}
    streaming = stream is not None and len(prompts) == 1 and len(names) * len(variants) == 1
    # Batches run on the base dequantized once for every model (harness.model.dense).
    with models.dense() if dense and not streaming else contextlib.nullcontext():
        for name in names:
            with models.use(name) as model:
                for variant in variants:
                    if on_column:
                        on_column(variant.label(name))
                    started = time.perf_counter()

                    def finished(index: int, generated, _name=name, _variant=variant) -> None:
                        record = make_record(items[index], prompts[index], _name, _variant, generated)
                        records.append(record)
                        append(record)

                    if streaming:
                        finished(
                            0,
                            generate_stream(
                                model,
                                tokenizer,
                                prompts[0],
                                variant.settings,
                                stream,
                                prompt_id=items[0].id,
                                engine=engine,
                                chat=chat,
                            ),
                        )
                    else:
                        generate(
                            model,
                            tokenizer,
                            [GenerationRequest(prompt, item.id) for prompt, item in zip(prompts, items)],
                            RunOptions(variant.settings, batch_size, engine=engine, shard=shard, chat=chat),
                            finished,
                        )
                    wall[variant.label(name)] = time.perf_counter() - started
    return records, wall


# ----------------------------------------------------------------- terminal


def stats_line(record: dict) -> str:
    rep = record["repetition"]
    stop = "hit max_new_tokens" if record["hit_limit"] else record["stop_reason"]
    rate = record.get("tokens_per_s")
    batch = f" (batch of {record['batch_size']})" if record.get("batch_size", 1) > 1 else ""
    repeat = f"{rep['longest_repeat_len']}-gram ×{rep['longest_repeat_count']}" if rep["longest_repeat_len"] else "none"
    return (
        f"{record['generated_tokens']} tokens · {record['time_s']:.2f} s{batch} · "
        f"{rate if rate is not None else '-'} tok/s · stop: {stop} · distinct-1 {rep['distinct_1']:.2f} · "
        f"distinct-2 {rep['distinct_2']:.2f} · longest repeat {repeat}"
    )


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` terminal columns (Hangul counts two), breaking at spaces where possible."""
    out = []
    for paragraph in text.split("\n"):
        line = ""
        for ch in paragraph:
            if _width(line + ch) > width:
                cut = line.rfind(" ")
                if cut > 0:
                    out.append(line[:cut])
                    line = line[cut + 1 :]
                else:
                    out.append(line)
                    line = ""
            line += ch
        out.append(line)
    return out


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def render_prompt(item: PromptItem, records: list[dict], width: int = 100, side_by_side: bool = False) -> str:
    """One prompt and each model × variant's answer: one under another, or in columns."""
    first = item.text.strip().splitlines()[0] if item.text.strip() else ""
    title = f"━━ prompt {item.id}: {first}"
    lines = [title if _width(title) <= width else wrap(title, width - 1)[0] + "…"]
    if side_by_side and len(records) > 1:
        gap = 3
        col = (width - gap * (len(records) - 1)) // len(records)
        cells = [
            [f"▸ {r['column']}"[:col], "─" * min(col, 40)] + wrap(r["output"], col) + [""] + wrap(stats_line(r), col)
            for r in records
        ]
        height = max(len(c) for c in cells)
        for n in range(height):
            lines.append((" " * gap).join(_pad(c[n] if n < len(c) else "", col) for c in cells).rstrip())
        return "\n".join(lines)
    for r in records:
        lines.append(f"▸ {r['column']}")
        lines.extend("  " + line for line in wrap(r["output"], max(20, width - 2)))
        lines.append("  · " + stats_line(r))
    return "\n".join(lines)


def summary_table(records: list[dict], wall: dict[str, float]) -> str:
    """Per model × variant: answers, tokens, throughput and the mean degeneration statistics."""
    columns: dict[str, list[dict]] = {}
    for r in records:
        columns.setdefault(r["column"], []).append(r)
    rows = []
    for column, recs in columns.items():
        tokens = sum(r["generated_tokens"] for r in recs)
        seconds = wall.get(column, 0.0)
        n = len(recs)
        rows.append(
            (
                column,
                n,
                tokens,
                f"{seconds:.2f}",
                f"{tokens / seconds:.1f}" if seconds else "-",
                f"{sum(r['repetition']['distinct_1'] for r in recs) / n:.2f}",
                f"{sum(r['repetition']['distinct_2'] for r in recs) / n:.2f}",
                f"{sum(r['repetition']['longest_repeat_len'] for r in recs) / n:.1f}",
                f"{100 * sum(r['hit_limit'] for r in recs) / n:.0f}%",
            )
        )
    return format_table(
        ["model", "answers", "tokens", "wall s", "tok/s", "distinct-1", "distinct-2", "longest repeat", "hit limit"],
        rows,
    )
