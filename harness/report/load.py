"""Read one or more run directories and merge them into one comparison (no model stack).

Runs merge when they evaluated the same suite on the same dataset (suite name and dataset
sha256 agree). Every model of every run becomes one column; a name that occurs in two runs
is suffixed with its run id. Deltas stay those each run computed against its own base
(paired bootstrap over the same samples); the sample view compares every model's output
with the first base model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.runs.store import RunDir, check_results


@dataclass
class Run:
    path: Path
    results: dict
    config: dict
    environment: dict
    records: dict[str, list[dict]]  # by the model's name inside this run
    results_file: str = "results.json"  # or a `harness rescore` output
    notes: list[str] = field(default_factory=list)  # records left out on reading

    @property
    def run_id(self) -> str:
        return str(self.results.get("run_id") or self.path.name)


@dataclass
class Model:
    name: str  # unique in the report
    run_name: str  # name inside its run
    run_id: str
    info: dict  # results.json "models" entry (kind, ref, path, sha256, train_record)
    metrics: dict  # label -> interval
    delta: dict | None  # label -> interval vs its run's base, None for a base / no base
    records: list[dict]
    throughput: dict | None = None

    @property
    def kind(self) -> str:
        return self.info.get("kind", "adapter")


@dataclass
class Report:
    runs: list[Run]
    models: list[Model]
    metric_info: dict
    suite: str
    task: str
    sample_ids: list[str] = field(default_factory=list)

    @property
    def first(self) -> dict:
        return self.runs[0].results

    @property
    def base(self) -> Model | None:
        return next((m for m in self.models if m.kind == "base"), None)

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    @property
    def report_id(self) -> str:
        suite = self.suite
        parts = []
        for run in self.runs:
            rid = run.run_id
            parts.append(rid[len(suite) + 1 :] if rid.startswith(suite + "-") else rid)
        return f"{suite}-{'+'.join(parts)}"

    def results_for_table(self) -> dict:
        """A results dict in results.json's shape, for harness.runs.summary.results_table."""
        return {
            "suite": self.suite,
            "n_samples": self.n_samples,
            "metric_info": self.metric_info,
            "long_prompts": self.first.get("long_prompts"),
            "bootstrap": self.first.get("bootstrap"),
            "metrics": {m.name: m.metrics for m in self.models},
            "deltas": {m.name: m.delta for m in self.models if m.delta},
            # one run's breakdown names its columns as the table does; merged runs' would not
            "breakdown": self.first.get("breakdown") if len(self.runs) == 1 else None,
        }


def load_run(path: str | Path, results_file: str = "results.json") -> Run:
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such run directory; pass a directory written by harness eval")
    if not path.is_dir():
        raise HarnessError(f"{path}: not a directory; pass a run directory (runs/RUN_ID), not a file")
    run = RunDir(path)
    if results_file != "results.json" and not (path / results_file).is_file():
        found = sorted(p.name for p in path.glob("results*.json"))
        raise HarnessError(
            f"{path / results_file}: not found; this run has {', '.join(found) or 'no results file'} "
            "(harness rescore writes results-rescored-*.json)"
        )
    results = run.read_json(results_file)
    check_results(results, path / results_file)
    config = _optional_json(run, "config.json")
    environment = _optional_json(run, "environment.json") or results.get("environment") or {}
    records = {name: run.read_records(name) for name in results["metrics"]}
    # A rescored results file carries the per-sample values it was computed from; the records on
    # disk keep those of the eval.
    for name, values in (results.get("sample_metrics") or {}).items():
        if name in records:
            records[name] = [{**r, "metrics": values.get(str(r.get("id")), {})} for r in records[name]]
    return Run(
        path=path,
        results=results,
        config=config if isinstance(config, dict) else {},
        environment=environment if isinstance(environment, dict) else {},
        records=records,
        results_file=results_file,
        notes=run.notes,
    )


def _optional_json(run: RunDir, name: str) -> dict:
    if not (run.path / name).is_file():
        return {}
    return run.read_json(name)


def merge_runs(runs: list[Run]) -> Report:
    first = runs[0].results
    suite, sha = first["suite"], (first.get("dataset") or {}).get("sha256")
    for run in runs[1:]:
        r = run.results
        if r["suite"] != suite:
            raise HarnessError(
                f"{run.path}: suite '{r['suite']}' differs from '{suite}' of {runs[0].path}; "
                "only runs of the same suite can be compared"
            )
        other_sha = (r.get("dataset") or {}).get("sha256")
        if other_sha != sha:
            raise HarnessError(
                f"{run.path}: dataset sha256 {str(other_sha)[:12]} differs from {str(sha)[:12]} "
                f"of {runs[0].path}; only runs on the same data can be compared"
            )
        if list(r["metric_info"]) != list(first["metric_info"]):
            raise HarnessError(
                f"{run.path}: metrics {', '.join(r['metric_info'])} differ from "
                f"{', '.join(first['metric_info'])} of {runs[0].path}; re-run with the same metrics"
            )
    seen = [name for run in runs for name in run.results["metrics"]]
    models = []
    for run in runs:
        r = run.results
        infos = {m.get("name"): m for m in r.get("models") or []}
        for name, metrics in r["metrics"].items():
            unique = f"{name}@{run.run_id}" if seen.count(name) > 1 else name
            info = infos.get(name) or {"name": name, "kind": "base" if name == "base" else "adapter"}
            models.append(
                Model(
                    name=unique,
                    run_name=name,
                    run_id=run.run_id,
                    info=info,
                    metrics=metrics,
                    delta=(r.get("deltas") or {}).get(name),
                    records=run.records[name],
                    throughput=(r.get("throughput") or {}).get(name),
                )
            )
    ids: list[str] = []
    known: set[str] = set()
    for model in models:
        for record in model.records:
            sid = str(record.get("id"))
            if sid not in known:
                known.add(sid)
                ids.append(sid)
    return Report(
        runs=runs,
        models=models,
        metric_info=first["metric_info"],
        suite=suite,
        task=str(first.get("task", "")),
        sample_ids=ids,
    )


def load_report(paths: list[str | Path], results_file: str = "results.json") -> Report:
    return merge_runs(load_runs(paths, results_file))


def load_runs(paths: list[str | Path], results_file: str = "results.json") -> list[Run]:
    runs = [load_run(p, results_file) for p in paths]
    resolved = [r.path.resolve() for r in runs]
    if len(set(resolved)) != len(resolved):
        raise HarnessError("the same run directory is given twice; pass each run once")
    return runs
