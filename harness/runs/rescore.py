"""`harness rescore`: score a finished run again from its records, without the model stack.

RUN_DIR/config.json holds the suite the run was evaluated with ("suite"); `--metric` and
`--set` change how the records are scored, never what was generated. The per-sample values are
recomputed with the task's own scorers (harness.tasks) and aggregated by harness.metrics.aggregate, so the
numbers are exactly those `harness eval` would have written with the same metric settings.

The records on disk and results.json are left as they are: the new figures, and every sample's
rescored per-sample values ("sample_metrics"), go into a new results file in RUN_DIR
(default results-rescored-<hash of the metric settings>.json) that
`harness report RUN_DIR --results FILE` renders. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import SuiteConfig, validate
from harness.config.generation import expand_grid
from harness.config.loader import set_dotted
from harness.errors import ConfigError, HarnessError
from harness.metrics.aggregate import aggregate, score_record
from harness.metrics.breakdown import breakdown
from harness.metrics.registry import auto_notes
from harness.runs.store import RunDir, content_key
from harness.tasks import get_task

# --set keys rescore accepts: they change how records are scored, not what was generated.
SCORING_FIELDS = ("metrics", "filters", "bootstrap")


@dataclass
class RescoreResult:
    path: Path
    results: dict
    notes: list[str]


def parse_metric_option(text: str) -> str | dict:
    """`--metric rouge1` → "rouge1"; `--metric my_metrics.py:fn` → "my_metrics.py:fn";
    `--metric rouge1:tokenizer=char,scorer=korean_competition` →
    {name: rouge1, tokenizer: char, scorer: korean_competition} (values read as YAML)."""
    import yaml

    # The options follow the last ':'; a user metric (FILE.py:FUNCTION) has one in its name.
    head, _, tail = text.rpartition(":")
    name, rest = (head, tail) if head and "=" in tail else (text, "")
    name = name.strip()
    if not name:
        raise ConfigError(f"--metric {text!r}: expected NAME or NAME:OPTION=VALUE[,OPTION=VALUE]")
    if not rest.strip():
        return name
    entry: dict[str, Any] = {"name": name}
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--metric {text!r}: expected OPTION=VALUE after ':', e.g. rouge1:tokenizer=whitespace")
        try:
            entry[key.strip()] = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            entry[key.strip()] = value
    return entry


def apply_set(raw: dict, key: str, value: Any, default_metrics: list) -> None:
    """Apply one `--set KEY=VALUE` to the stored suite (a plain dict).

    `metrics=[...]` replaces the list; `metrics.SELECTOR.OPTION=VALUE` sets OPTION on every metric
    entry named SELECTOR, or, when none is, on every entry whose name starts with SELECTOR
    (`metrics.rouge.tokenizer=whitespace` reaches rouge1, rouge2, rougeL and rougeLsum; `*` reaches
    all); VALUE null removes the option. `bootstrap.FIELD=VALUE` sets a bootstrap field.
    """
    parts = key.split(".")
    if parts[0] not in SCORING_FIELDS:
        raise ConfigError(
            f"--set {key}: rescore only changes how the records are scored ({', '.join(f + '.*' for f in SCORING_FIELDS)}); "
            f"'{parts[0]}' changes what the models generated, so run harness eval with it instead"
        )
    if parts[0] == "bootstrap":
        set_dotted(raw, key, value)
        return
    if len(parts) == 1:
        raw[parts[0]] = value
        return
    if parts[0] == "filters":
        raise ConfigError(f"--set {key}: give the whole list, e.g. --set 'filters=[{{function: first_line}}]'")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ConfigError(
            f"--set {key}: write metrics.NAME.OPTION=VALUE, e.g. --set metrics.rouge.tokenizer=whitespace"
        )
    selector, option = parts[1], parts[2]
    entries = [dict(e) if isinstance(e, dict) else {"name": e} for e in (raw.get("metrics") or default_metrics)]
    names = [str(e.get("name")) for e in entries]
    chosen = [e for e in entries if selector == "*" or e.get("name") == selector] or [
        e for e in entries if str(e.get("name")).startswith(selector)
    ]
    if not chosen:
        raise ConfigError(
            f"--set {key}: no metric is named or starts with '{selector}'; "
            f"the run's metrics are {', '.join(names) or 'none'}"
        )
    for entry in chosen:
        if value is None:
            entry.pop(option, None)
        else:
            entry[option] = value
    raw["metrics"] = [e if set(e) != {"name"} else e["name"] for e in entries]


def metric_settings_hash(suite: SuiteConfig, metrics: list) -> str:
    filters = [f.model_dump(mode="json") for f in suite.filters]
    # Without filters the hash is the one earlier runs' rescored files are named by.
    return content_key(metrics, suite.bootstrap.model_dump(mode="json"), *([filters] if filters else []))[:8]


def _output_name(name: str | None, default: str) -> str:
    if name is None:
        return default
    if "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(
            f"-o {name}: give a file name; the results file is written inside the run directory "
            "so that harness report RUN_DIR --results NAME finds it"
        )
    if not name.endswith(".json"):
        raise ConfigError(f"-o {name}: the results file name must end in .json")
    if name in ("results.json", "config.json", "environment.json"):
        raise ConfigError(
            f"-o {name}: that is the run's own file and stays as it is; choose another name, "
            "e.g. results-whitespace.json"
        )
    return name


def rescore(
    run_dir: str | Path, metrics: list | None = None, sets: list[tuple[str, Any]] = (), output: str | None = None
) -> RescoreResult:
    path = Path(run_dir)
    if not path.is_dir():
        what = "not a directory" if path.exists() else "no such run directory"
        raise HarnessError(f"{path}: {what}; pass a run directory written by harness eval (runs/RUN_ID)")
    run = RunDir(path)
    config = run.read_json("config.json")
    task, suite = _rescoring_suite(path, config, metrics, sets)
    records = _read_columns(run, config)
    first = next(iter(records.values()))
    try:
        scorers = task.scorers(suite, [r.get("references") or [] for r in first])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    notes = run.notes + auto_notes(scorers)
    rescored = {column: _rescore_records(run, column, recs, scorers) for column, recs in records.items()}
    aggregated = _aggregate(path, task, suite, rescored, scorers)
    previous = run.read_json("results.json") if (path / "results.json").is_file() else {}
    if not isinstance(previous, dict):
        raise HarnessError(f"{path / 'results.json'}: expected a JSON object; re-run the eval to rewrite it")
    metric_entries = suite.metrics or list(task.default_metrics)
    settings_hash = metric_settings_hash(suite, metric_entries)
    name = _output_name(output, f"results-rescored-{settings_hash}.json")
    notes += _changed_versions(previous.get("metric_info"), aggregated["metric_info"])
    recomputed = ("metrics", "deltas", "metric_info", "bootstrap", "breakdown")
    results = {k: v for k, v in previous.items() if k not in recomputed}
    results.update(aggregated)
    results.setdefault("suite", suite.name)
    results.setdefault("task", task.kind)
    results.setdefault("run_id", path.name)
    results.setdefault("n_samples", len(first))
    results["rescored"] = {
        "from": "results.json" if previous else None,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metrics": metric_entries,
        "filters": [f.model_dump(mode="json") for f in suite.filters],
        "bootstrap": suite.bootstrap.model_dump(mode="json"),
        "settings_sha": settings_hash,
        "notes": notes,
    }
    results["sample_metrics"] = {
        column: {str(r["id"]): r["metrics"] for r in recs} for column, recs in rescored.items()
    }
    if suite.filters:  # the answers the new filters extract, beside the records' own
        results["sample_predictions"] = {
            column: {str(r["id"]): task.answer(suite.filters, r["output"]) for r in recs if "output" in r}
            for column, recs in records.items()
        }
    run.write_json(name, results)
    return RescoreResult(path=path / name, results=results, notes=notes)


def _changed_versions(before, after: dict) -> list[str]:
    """A metric computed by other code than at eval time (a user metric's file edited since): say so."""
    before = before if isinstance(before, dict) else {}
    return [
        f"metric {label}: computed by {info['version']}, not {before[label].get('version')} as at eval time"
        for label, info in after.items()
        if isinstance(before.get(label), dict) and before[label].get("version", info["version"]) != info["version"]
    ]


def _rescoring_suite(path: Path, config, metrics: list | None, sets) -> tuple:
    """(task, suite): the suite the run was evaluated with, its scoring changed by --metric and --set."""
    stored = config.get("suite") if isinstance(config, dict) else None
    if not isinstance(stored, dict):
        raise HarnessError(f"{path / 'config.json'}: field 'suite' is missing; re-run the eval to rewrite it")
    raw = copy.deepcopy(stored)
    task = get_task(str(raw.get("task", "")), where=f"{path / 'config.json'}: field 'suite.task'")
    if metrics:
        raw["metrics"] = list(metrics)
    for key, value in sets:
        apply_set(raw, key, value, list(task.default_metrics))
    return task, validate(SuiteConfig, raw, f"{path / 'config.json'} (with --metric/--set)")


def _read_columns(run: RunDir, config: dict) -> dict[str, list[dict]]:
    """Every column's records, in the order config.json lists the models (else by file name)."""
    listed = config.get("models") if isinstance(config.get("models"), list) else []
    columns = [str(m["name"]) for m in listed if isinstance(m, dict) and m.get("name")]
    if not columns:
        columns = sorted(p.stem for p in run.records_dir.glob("*.jsonl"))
    if not columns:
        raise HarnessError(f"{run.records_dir}: no records; run harness eval to write them first")
    records = {column: run.read_records(column) for column in columns}
    if not records[columns[0]]:
        raise HarnessError(f"{run.records_file(columns[0])}: no records; re-run the eval to complete the run")
    return records


def _rescore_records(run: RunDir, column: str, records: list[dict], scorers) -> list[dict]:
    """Copies of the records with their per-sample values computed again (those on disk keep theirs)."""
    rescored = []
    for r in records:
        try:
            if "id" not in r:
                raise KeyError("id")
            rescored.append({**r, "metrics": score_record(r, scorers)})
        except HarnessError as exc:
            raise HarnessError(f"{run.records_file(column)}: sample '{r.get('id')}': {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HarnessError(
                f"{run.records_file(column)}: sample '{r.get('id')}': field {exc} is missing or "
                "not what the eval writes; re-run the eval to rewrite the records"
            ) from None
    return rescored


def _aggregate(path: Path, task, suite: SuiteConfig, rescored: dict[str, list[dict]], scorers) -> dict:
    variants = expand_grid(
        suite.generation,
        suite.generation_grid if task.kind != "perplexity" else {},
        f"{path / 'config.json'}: generation_grid",
    )
    base_column = variants[0].label("base")
    b = suite.bootstrap
    settings = (base_column if base_column in rescored else None, b.resamples, b.seed, b.confidence, b.correction)
    try:
        aggregated = aggregate(rescored, scorers, *settings)
        if (subjects := breakdown(rescored, scorers, *settings)) is not None:
            aggregated["breakdown"] = subjects
        return aggregated
    except ValueError as exc:
        raise HarnessError(f"{path}: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise HarnessError(
            f"{path}: records field {exc} is missing or not what the eval writes; "
            "re-run the eval to rewrite the records"
        ) from None
