"""Run directories: resolved config, environment, one JSONL of records per model, results.

runs/RUN_ID/
  config.json          the resolved suite (after CLI overrides) and the dataset it read
  environment.json     device and library versions
  records/MODEL.jsonl  one line per sample, appended (and flushed) as samples finish
  records/MODEL.rankR.jsonl  the same, per rank, while several processes share the samples
                       (rank 0 merges them into MODEL.jsonl when the model is done)
  results.json         aggregates, intervals, deltas, throughput (written atomically)

Records carry a `key` over everything that produced them (model identity including the
adapter weights' hash, prompt, generation settings); resume reuses only matching keys.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.errors import HarnessError, first_line
from harness.runs.jsonl import RecordAppender, dumps_record, ends_with_newline, line_count, read_jsonl_records
from harness.runtime.files import atomic_write_json, write_failure


def content_key(*parts) -> str:
    # surrogatepass: a lone surrogate (a JSON escape in a dataset) is text to key on, not an error
    return hashlib.sha256(
        json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    ).hexdigest()


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.notes: list[str] = []  # lines of records left out on reading, for the command to print

    @property
    def records_dir(self) -> Path:
        return self.path / "records"

    def create(self) -> RunDir:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        return self

    def records_file(self, model: str, rank: int | None = None) -> Path:
        stem = safe_file_stem(model)
        return self.records_dir / (f"{stem}.jsonl" if rank is None else f"{stem}.rank{rank}.jsonl")

    def shard_files(self, model: str) -> list[Path]:
        """Every rank's shard of a model's records, whatever the number of processes that wrote them."""
        if not self.records_dir.is_dir():
            return []
        prefix = f"{safe_file_stem(model)}.rank"
        return sorted(
            p
            for p in self.records_dir.iterdir()
            if p.name.startswith(prefix)
            and p.name.endswith(".jsonl")
            and p.name[len(prefix) : -len(".jsonl")].isdigit()
        )

    def load_records(self, model: str) -> dict[str, dict]:
        """Records by key, from the merged file and any rank's shard, for resuming: a line that is not
        a whole record (a killed run, a full disk) is left out and computed again."""
        found: dict[str, dict] = {}
        for path in [self.records_file(model), *self.shard_files(model)]:
            if not path.is_file():
                continue
            records, skipped = read_jsonl_records(path)
            self.notes += [f"{path} line {n}: not a whole record; it is computed again" for n in skipped]
            for record in records:
                if "key" in record:
                    found[record["key"]] = record
        return found

    def appender(self, model: str, rank: int | None = None):
        """(append, close) for a model's records (or one rank's shard of them), each written whole as it finishes."""
        append = RecordAppender(self.records_file(model, rank))
        return append, append.close

    def write_records(self, model: str, records: list[dict]) -> None:
        """Rewrite a model's records in sample order (after resume, stale keys are dropped)."""
        path = self.records_file(model)
        tmp = path.with_suffix(".jsonl.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                for record in records:
                    fh.write(dumps_record(record) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise HarnessError(write_failure(path, exc)) from None
        for shard in self.shard_files(model):  # merged into `path` now
            shard.unlink(missing_ok=True)

    def merge_records(self, model: str, records: list[dict], world) -> None:
        """In a world of processes (harness.runtime.distributed.Dist) that each hold every rank's records:
        rank 0 writes them (its ranks' shards merged in), and every rank waits until it has."""
        if world.main:
            self.write_records(model, records)
        world.barrier()

    def write_json(self, name: str, data) -> None:
        atomic_write_json(self.path / name, data)

    def read_json(self, name: str) -> dict:
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HarnessError(f"{path}: not found; is {self.path} a run directory written by harness eval?") from None
        except (OSError, ValueError, RecursionError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else first_line(exc, 120)
            raise HarnessError(f"{path}: unreadable ({reason}); re-run the eval to rewrite it") from None

    def read_records(self, model: str) -> list[dict]:
        """A model's records in file order, for reports and rescoring. A torn last line (a run stopped while
        writing it) is left out with a note; any other line that is not a record is an error."""
        path = self.records_file(model)
        if not path.is_file():
            raise HarnessError(f"{path}: no records for model '{model}'; re-run the eval to complete the run")
        try:
            records, skipped = read_jsonl_records(path)
        except OSError as exc:
            raise HarnessError(f"{path}: unreadable ({exc.strerror or exc}); re-run the eval to rewrite it") from None
        last = path.stat().st_size and not ends_with_newline(path)
        for number in skipped:
            if not (last and number == skipped[-1] == line_count(path)):
                raise HarnessError(
                    f"{path} line {number}: not a JSON record; re-run the eval to rewrite the run's "
                    "records (it resumes from the readable ones)"
                )
            self.notes.append(
                f"{path} line {number}: incomplete (the run stopped while writing it); left out, "
                "re-run the eval to complete it"
            )
        return records


def safe_file_stem(label: str) -> str:
    """A column label as a file name: itself where that is safe, else the label with unsafe characters
    replaced and a hash of the whole label, so two labels never share a file. Results keep the label."""
    if (
        label
        and not label.startswith(".")
        and not any(map(_unsafe_in_name, label))
        and len(label.encode("utf-8")) <= MAX_STEM_BYTES
    ):
        return label
    readable = "".join("_" if _unsafe_in_name(ch) else ch for ch in label).lstrip(".")
    while len(readable.encode("utf-8")) > MAX_STEM_BYTES - 13:
        readable = readable[:-1]
    return f"{readable}-{hashlib.sha256(label.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def _unsafe_in_name(ch: str) -> bool:
    # path separators, control characters, and surrogates (no file system can store them)
    return ch in "/\\" or ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF


# File names are at most 255 bytes; a shard adds ".rank12345.jsonl".
MAX_STEM_BYTES = 200


def check_results(results, where: Path) -> None:
    """The shapes the report reads, so a hand-edited or damaged results file is one line, not a crash."""
    fix = "re-run the eval (or harness rescore) to rewrite it"
    if not isinstance(results, dict):
        raise HarnessError(f"{where}: expected a JSON object, got {type(results).__name__}; {fix}")
    for key in ("metrics", "metric_info", "suite"):
        if key not in results:
            raise HarnessError(f"{where}: field '{key}' is missing; {fix}")
    if not isinstance(results["suite"], str):
        raise HarnessError(f"{where}: field 'suite' is not a string; {fix}")
    for key in ("metrics", "metric_info"):
        if not isinstance(results[key], dict) or not all(isinstance(v, dict) for v in results[key].values()):
            raise HarnessError(f"{where}: field '{key}' is not an object of objects; {fix}")
    for model, metrics in results["metrics"].items():
        for label, entry in metrics.items():
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), (int, float, type(None))) for k in ("value", "low", "high")
            ):
                raise HarnessError(f"{where}: field 'metrics.{model}.{label}' is not an interval of numbers; {fix}")
    for key in ("deltas", "throughput", "sample_metrics", "verify", "repetition", "dataset", "bootstrap"):
        if results.get(key) is not None and not isinstance(results[key], dict):
            raise HarnessError(f"{where}: field '{key}' is not an object; {fix}")
    for key, value in (results.get("deltas") or {}).items():
        if not isinstance(value, dict) or not all(isinstance(d, dict) for d in value.values()):
            raise HarnessError(f"{where}: field 'deltas.{key}' is not an object of intervals; {fix}")
    models = results.get("models")
    if models is not None and not (isinstance(models, list) and all(isinstance(m, dict) for m in models)):
        raise HarnessError(f"{where}: field 'models' is not a list of objects; {fix}")


# What describes how a run went rather than what it found: results.json's fields, and a record's.
RUN_FIELDS = frozenset({"throughput", "finished_at", "run_id", "world_size", "environment"})
TIMING_FIELDS = frozenset({"time_s", "tokens_per_s"})


def comparable_results(run: Path, leave_out=()) -> dict:
    """A run's results.json without RUN_FIELDS (and `leave_out`): what two runs of the same work share."""
    data = json.loads((Path(run) / "results.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in RUN_FIELDS and k not in leave_out}


def comparable_records(path: Path) -> list[dict]:
    """A JSONL of records (harness eval's or generate's) without TIMING_FIELDS, in file order."""
    rows, _skipped = read_jsonl_records(Path(path))
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def latest_run(root: Path) -> Path:
    candidates = list(Path(root).glob("*/results.json"))
    if not candidates:
        raise HarnessError(f"{root}: no finished run found; run `harness eval SUITE` first or pass a run directory")
    return max(candidates, key=lambda p: p.stat().st_mtime).parent
