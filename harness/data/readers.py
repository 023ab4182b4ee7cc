"""Readers: JSON arrays of records, SQuAD/KorQuAD JSON, JSONL, CSV/TSV, parquet, `save_to_disk` folders and
hub datasets → a list of flat example dicts."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from harness.data.builtin import BUILTIN_PREFIX, resolve_builtin
from harness.data.formats import is_disk_folder, read_delimited, read_disk, read_parquet
from harness.data.hub import CONFIG_COLUMN, read_hub
from harness.errors import DataError

FORMATS = ("auto", "korquad", "squad", "json", "jsonl", "csv", "tsv", "parquet", "disk", "hub")
_BY_SUFFIX = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


@dataclass
class Dataset:
    examples: list[dict]
    source: str  # what the user named
    path: str | None  # the file read, if any
    format: str
    sha256: str  # of the file's bytes, or of the hub dataset's fingerprint


def reader_options(settings) -> dict:
    """The keyword arguments of `load_dataset` beyond the positional ones, from a train `data` or a
    suite `dataset` section."""
    env = getattr(settings, "path_env", None)
    return {
        "sample": settings.sample,
        "hub": {"name": settings.name, "data_files": settings.data_files, "revision": settings.revision},
        "local_hint": f"set ${env} or pass --data PATH" if env else None,
    }


def load_dataset(
    path: str,
    format: str = "auto",
    split: str = "train",
    fields: dict[str, str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    where: str = "data.path",
    sample: str = "random",
    hub: dict | None = None,
    local_hint: str | None = None,
) -> Dataset:
    """Read a dataset, map fields, keep `limit` examples: the first ones, or a seeded sample (order kept).
    `hub`: datasets.load_dataset's name (one or a list), data_files and revision; `local_hint`: how to
    give a local copy instead, for the error of a hub dataset that cannot be reached."""
    hub = hub or {}
    file = resolve_builtin(path) if path.startswith(BUILTIN_PREFIX) else Path(path).expanduser()
    fmt = _detect_format(file, format, path, any(v is not None for v in hub.values()))
    file_str = None
    if fmt == "hub":
        examples, digest = read_hub(path, split, where, hub, local_hint)
    elif fmt == "disk":
        examples, digest = read_disk(file, path, split, where)
        file_str = str(file)
    else:
        if not file.is_file():
            raise DataError(f"{path}: data file not found ({where}); check the path")
        raw = file.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        examples = _read_file(file, raw, fmt, path)
        file_str = str(file)
    if fmt != "hub":
        examples = local_configs(examples, hub.get("name"), path, where)
    examples = [map_fields(ex, fields or {}, path) for ex in examples]
    if not examples:
        raise DataError(f"{path}: dataset is empty ({where}); give a file with at least one example")
    if limit is not None and limit < len(examples):
        examples = take(examples, limit, sample, seed)
    return Dataset(examples=examples, source=path, path=file_str, format=fmt, sha256=digest)


def local_configs(examples: list[dict], name, source: str, where: str) -> list[dict]:
    """A local copy read for a suite that names hub configurations: with a `config` column, the rows of
    the configurations named; without one, a single name means the file is that configuration."""
    names = [name] if isinstance(name, str) else name
    if not names or (isinstance(name, str) and not any(CONFIG_COLUMN in e for e in examples)):
        return examples
    if not all(CONFIG_COLUMN in e for e in examples):
        raise DataError(
            f"{source}: the suite reads the configurations {', '.join(names)} but rows lack a '{CONFIG_COLUMN}' "
            f"column ({where}); add it, naming each row's configuration"
        )
    kept = [e for e in examples if e[CONFIG_COLUMN] in names]
    if not kept:
        raise DataError(
            f"{source}: no row's '{CONFIG_COLUMN}' is one of {', '.join(names)} ({where}); check dataset.name"
        )
    return kept


def take(examples: list[dict], limit: int, sample: str, seed: int) -> list[dict]:
    if sample == "first":
        return examples[:limit]
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def _read_file(file: Path, raw: bytes, fmt: str, source: str) -> list[dict]:
    if fmt == "parquet":
        return read_parquet(file, source)
    text = _decode(raw, source)
    if fmt in ("csv", "tsv"):
        return read_delimited(text, source, "\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        return _read_jsonl(text, source)
    if fmt == "squad":
        return _read_squad(parse_json(text, source), source)
    return _read_json(text, source)


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


def _detect_format(file: Path, format: str, source: str, hub_options: bool) -> str:
    if format != "auto":
        return "squad" if format == "korquad" else format
    if hub_options and not (file.is_file() and file.suffix.lower() in _BY_SUFFIX) and not is_disk_folder(file):
        return "hub"  # a local file or saved dataset stands in for the hub dataset the settings name
    if file.is_dir():
        return "disk" if is_disk_folder(file) else "hub"  # a plain folder: datasets' own file-type detection
    if file.suffix.lower() in _BY_SUFFIX:
        return _BY_SUFFIX[file.suffix.lower()]
    if not file.exists() and "/" in source and not source.startswith((".", "/", "~")):
        return "hub"
    raise DataError(
        f"{source}: cannot tell the dataset format from the name; set data.format to one of {', '.join(FORMATS[1:])}"
    )


def _read_json(text: str, source: str) -> list[dict]:
    """A `.json` file: a list of records, SQuAD/KorQuAD layout, or JSON Lines under a .json name (as
    `datasets`' to_json writes them), told apart by the content."""
    try:
        doc = text_only(json.loads(text))
    except (json.JSONDecodeError, RecursionError) as exc:
        if getattr(exc, "msg", None) == "Extra data" and text.lstrip().startswith("{"):
            return _read_jsonl(text, source)
        doc = parse_json(text, source)  # raises the one-line error
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return _read_squad(doc, source)
    if isinstance(doc, list):
        for n, record in enumerate(doc):
            if not isinstance(record, dict):
                raise DataError(f"{source}: item [{n}] is {_shown(record)}, not an object; {_JSON_SHAPES}")
            record.setdefault("id", str(n + 1))
        return doc
    raise DataError(f"{source}: a JSON {_shown(doc)[:60]} is not a dataset; {_JSON_SHAPES}")


_JSON_SHAPES = (
    "a .json file holds a list of records ([{...}, ...]), SQuAD/KorQuAD layout (a top-level 'data' list of "
    "articles with 'paragraphs') or one JSON object per line; set data.format to json, squad or jsonl"
)


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text (byte {exc.start}); convert the file to UTF-8") from None


def _read_squad(doc, source: str) -> list[dict]:
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
