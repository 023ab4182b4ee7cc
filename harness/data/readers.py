"""Readers: SQuAD/KorQuAD JSON, JSONL, CSV and hub datasets → a list of flat example dicts."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from harness.data.builtin import BUILTIN_PREFIX, resolve_builtin
from harness.errors import DataError

FORMATS = ("auto", "korquad", "squad", "jsonl", "csv", "hub")


@dataclass
class Dataset:
    examples: list[dict]
    source: str  # what the user named
    path: str | None  # the file read, if any
    format: str
    sha256: str  # of the file's bytes, or of the hub dataset's fingerprint


def load_dataset(
    path: str,
    format: str = "auto",
    split: str = "train",
    fields: dict[str, str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    where: str = "data.path",
) -> Dataset:
    """Read a dataset, map fields, take a seeded sample of `limit` examples (order kept)."""
    file = resolve_builtin(path) if path.startswith(BUILTIN_PREFIX) else Path(path).expanduser()
    fmt = _detect_format(file, format, path)
    if fmt == "hub":
        examples, digest = _read_hub(path, split, where)
        file_str = None
    else:
        if not file.is_file():
            raise DataError(f"{path}: data file not found ({where}); check the path")
        raw = file.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        text = _decode(raw, path)
        examples = {"korquad": _read_squad, "squad": _read_squad, "jsonl": _read_jsonl, "csv": _read_csv}[fmt](
            text, path
        )
        file_str = str(file)
    examples = [map_fields(ex, fields or {}, path) for ex in examples]
    if not examples:
        raise DataError(f"{path}: dataset is empty ({where}); give a file with at least one example")
    if limit is not None and limit < len(examples):
        keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
        examples = [examples[i] for i in keep]
    return Dataset(examples=examples, source=path, path=file_str, format=fmt, sha256=digest)


def map_fields(example: dict, fields: dict[str, str], source: str) -> dict:
    """Expose dataset column `fields[name]` under template field `name`."""
    if not fields:
        return example
    out = dict(example)
    for name, column in fields.items():
        if column not in example:
            raise DataError(
                f"{source}: column '{column}' (mapped to '{name}' in fields) is absent; "
                f"columns are: {', '.join(sorted(example))}"
            )
        out[name] = example[column]
    return out


def _detect_format(file: Path, format: str, source: str) -> str:
    if format != "auto":
        return "squad" if format == "korquad" else format
    suffix = file.suffix.lower()
    if suffix == ".json":
        return "squad"
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if not file.exists() and "/" in source and not source.startswith((".", "/", "~")):
        return "hub"
    raise DataError(
        f"{source}: cannot tell the dataset format from the name; set data.format to one of {', '.join(FORMATS[1:])}"
    )


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (byte {exc.start}); convert the file to UTF-8") from None


def _read_squad(text: str, source: str) -> list[dict]:
    doc = parse_json(text, source)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{source}: expected SQuAD/KorQuAD layout with a top-level 'data' list")
    examples = []
    for a, article in enumerate(doc["data"]):
        where = f"{source}: data[{a}]"
        _expect(article, dict, where, "an object with 'title' and 'paragraphs'")
        for p, paragraph in enumerate(_expect(article.get("paragraphs", []), list, f"{where}.paragraphs", "a list")):
            at = f"{where}.paragraphs[{p}]"
            _expect(paragraph, dict, at, "an object with 'context' and 'qas'")
            context = _expect(paragraph.get("context", ""), str, f"{at}.context", "a string")
            for q, qa in enumerate(_expect(paragraph.get("qas", []), list, f"{at}.qas", "a list")):
                examples.append(_squad_example(qa, f"{at}.qas[{q}]", article.get("title", ""), context))
    return examples


def _squad_example(qa, where: str, title, context: str) -> dict:
    _expect(qa, dict, where, "an object with 'id', 'question' and 'answers'")
    if "id" not in qa or "question" not in qa:
        raise DataError(f"{where}: a question lacks 'id' or 'question'; give both")
    question = _expect(qa["question"], str, f"{where}.question", "a string")
    answers = []
    for n, answer in enumerate(
        _expect(qa.get("answers", []), list, f"{where}.answers", 'a list of {"text": ...} objects (empty for none)')
    ):
        text = answer.get("text") if isinstance(answer, dict) else None
        if not isinstance(text, str):
            raise DataError(
                f"{where}.answers[{n}]: expected an object with a string 'text', got "
                f'{_shown(answer)}; write answers as [{{"text": "..."}}]'
            )
        answers.append(text)
    return {
        "id": str(qa["id"]),
        "title": str(title),
        "context": context,
        "question": question,
        "answers": answers,
        "answer": answers[0] if answers else "",
    }


def _expect(value, kind: type, where: str, what: str):
    if not isinstance(value, kind):
        raise DataError(f"{where}: expected {what}, got {_shown(value)}; fix the data file")
    return value


def _shown(value) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value, ensure_ascii=False)[:40]}"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_only(value):
    """Parsed JSON with lone surrogates (JSON escapes such as \\ud800 that pair with nothing) replaced
    by U+FFFD: they are not text, no tokenizer takes them and no UTF-8 file can hold them."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value) if _LONE_SURROGATE.search(value) else value
    if isinstance(value, list):
        return [text_only(v) for v in value]
    if isinstance(value, dict):
        return {text_only(k): text_only(v) for k, v in value.items()}
    return value


def parse_json(text: str, source: str, line: int | None = None):
    """json.loads with every failure a DataError naming the file (and line): malformed text, and
    nesting too deep for the parser."""
    at = f"{source} line {line}" if line is not None else source
    try:
        return text_only(json.loads(text))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if line is None else f"column {exc.colno}"
        raise DataError(f"{at}: malformed JSON at {where}: {exc.msg}; fix the JSON") from None
    except RecursionError:
        raise DataError(f"{at}: JSON nested too deeply to read; flatten the data") from None


def split_lines(text: str) -> list[str]:
    """Lines split on "\n" (and "\r\n") only: U+2028, U+2029, U+0085 and form feeds are text inside a
    JSON string or a prompt, not line breaks, whatever str.splitlines() thinks."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def jsonl_objects(text: str, source: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; anything but a JSON object is an error."""
    objects = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = text_only(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{source} line {number}: invalid JSON ({exc.msg}); write one JSON object per line"
            ) from None
        except RecursionError:
            raise DataError(f"{source} line {number}: JSON nested too deeply to read; flatten the data") from None
        if not isinstance(record, dict):
            raise DataError(f"{source} line {number}: not a JSON object; write one JSON object per line")
        objects.append((number, record))
    return objects


def _read_jsonl(text: str, source: str) -> list[dict]:
    examples = []
    for number, record in jsonl_objects(text, source):
        record.setdefault("id", str(number))
        examples.append(record)
    return examples


def _read_csv(text: str, source: str) -> list[dict]:
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{source}: malformed CSV ({exc}); fix the file") from None
    for number, row in enumerate(rows, start=1):
        row.setdefault("id", str(number))
    return rows


def _read_hub(path: str, split: str, where: str) -> tuple[list[dict], str]:
    import datasets

    try:
        ds = datasets.load_dataset(path, split=split)
    except Exception as exc:  # datasets raises many types; all mean "cannot get this dataset"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: cannot load hub dataset split '{split}' ({where}): {first}") from None
    examples = [dict(row) for row in ds]
    for i, row in enumerate(examples):
        row.setdefault("id", str(i))
    return examples, hashlib.sha256(ds._fingerprint.encode()).hexdigest()


def split_validation(examples: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out a seeded `fraction` for validation (at least one example when fraction > 0)."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    n_val = max(1, round(len(examples) * fraction))
    if n_val >= len(examples):
        raise DataError(
            f"data.validation_fraction {fraction:g} holds out all {len(examples)} examples and leaves "
            "none to train on; lower it or give more examples"
        )
    held = set(random.Random(seed).sample(range(len(examples)), n_val))
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]
