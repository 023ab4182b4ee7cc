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

from harness.errors import HarnessError
from harness.records import atomic_write_json


def content_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def records_dir(self) -> Path:
        return self.path / "records"

    def create(self) -> "RunDir":
        self.records_dir.mkdir(parents=True, exist_ok=True)
        return self

    def records_file(self, model: str, rank: int | None = None) -> Path:
        return self.records_dir / (f"{model}.jsonl" if rank is None else f"{model}.rank{rank}.jsonl")

    def shard_files(self, model: str) -> list[Path]:
        """Every rank's shard of a model's records, whatever the number of processes that wrote them."""
        if not self.records_dir.is_dir():
            return []
        prefix = f"{model}.rank"
        return sorted(p for p in self.records_dir.iterdir()
                      if p.name.startswith(prefix) and p.name.endswith(".jsonl")
                      and p.name[len(prefix):-len(".jsonl")].isdigit())

    def load_records(self, model: str) -> dict[str, dict]:
        """Records by key, from the merged file and any rank's shard; a torn last line (a killed run) is
        skipped, not fatal."""
        found: dict[str, dict] = {}
        for path in [self.records_file(model), *self.shard_files(model)]:
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "key" in record:
                    found[record["key"]] = record
        return found

    def appender(self, model: str, rank: int | None = None):
        path = self.records_file(model, rank)
        torn = False
        if path.is_file() and path.stat().st_size > 0:
            with path.open("rb") as tail:
                tail.seek(-1, os.SEEK_END)
                torn = tail.read(1) != b"\n"
        fh = path.open("a", encoding="utf-8")
        if torn:  # a killed run left half a line; start the next record on a line of its own
            fh.write("\n")

        def append(record: dict) -> None:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

        return append, fh.close

    def write_records(self, model: str, records: list[dict]) -> None:
        """Rewrite a model's records in sample order (after resume, stale keys are dropped)."""
        path = self.records_file(model)
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        for shard in self.shard_files(model):  # merged into `path` now
            shard.unlink(missing_ok=True)

    def write_json(self, name: str, data) -> None:
        atomic_write_json(self.path / name, data)

    def read_json(self, name: str) -> dict:
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HarnessError(f"{path}: not found; is {self.path} a run directory written by harness eval?") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise HarnessError(f"{path}: unreadable ({exc}); re-run the eval to rewrite it") from None

    def read_records(self, model: str) -> list[dict]:
        path = self.records_file(model)
        if not path.is_file():
            raise HarnessError(f"{path}: no records for model '{model}'; re-run the eval to complete the run")
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# What describes how a run went rather than what it found: results.json's fields, and a record's.
RUN_FIELDS = frozenset({"throughput", "finished_at", "run_id", "world_size", "environment"})
TIMING_FIELDS = frozenset({"time_s", "tokens_per_s"})


def comparable_results(run: Path, leave_out=()) -> dict:
    """A run's results.json without RUN_FIELDS (and `leave_out`): what two runs of the same work share."""
    data = json.loads((Path(run) / "results.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in RUN_FIELDS and k not in leave_out}


def comparable_records(path: Path) -> list[dict]:
    """A JSONL of records (harness eval's or generate's) without TIMING_FIELDS, in file order."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def latest_run(root: Path) -> Path:
    candidates = [p for p in Path(root).glob("*/results.json")]
    if not candidates:
        raise HarnessError(f"{root}: no finished run found; run `harness eval SUITE` first or pass a run directory")
    return max(candidates, key=lambda p: p.stat().st_mtime).parent
