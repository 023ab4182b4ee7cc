"""The prompts `harness generate` answers: read from options, a file or standard input, and filled into a
template where one is given."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness.data.readers import jsonl_objects, split_lines
from harness.errors import ConfigError, DataError


@dataclass(frozen=True)
class PromptItem:
    id: str
    text: str  # as given (or rendered from a template), before any chat template


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
