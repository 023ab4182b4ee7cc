"""Several suites evaluated on one loaded base: every suite's dataset read and checked first, then the base
(4-bit) loaded once with every adapter attached, then each suite planned, run and written to its own run
directory in turn, exactly as `run_eval` does for one suite (same run ids, records, results.json, resume).

A user error in a later suite stops the command there; the runs finished before it stay on disk and the
message names the suite that failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.config.suite import SuiteConfig
from harness.errors import ConfigError, HarnessError
from harness.evaluate.plan import Sources
from harness.evaluate.run import EvalResult, load_models, read_suite, run_eval
from harness.runtime.console import close_log_file
from harness.runtime.distributed import Dist
from harness.runtime.env import detect

# What the one loaded base is made of: every suite must agree on these.
BASE_FIELDS = ("base", "quantization", "device_map", "max_memory_per_gpu")


@dataclass
class SuiteEntry:
    suite: SuiteConfig
    source: str  # where the suite came from, for messages
    sources: Sources  # columns beyond the suite's (--sweep, --checkpoints, --model)


def eval_suites(
    entries: list[SuiteEntry], out_root: str | Path, log: Callable[[str], None], progress_bars: bool = True
) -> list[EvalResult]:
    """Evaluate every suite on one loaded base; the results in the order of `entries`."""
    check_one_base(entries)
    check_names(entries)
    adapters = shared_adapters(entries)
    data = [_read(i, entries) for i in range(len(entries))]
    first, dist = entries[0], Dist.current()
    models = load_models(first.suite, detect(), dist, first.sources, adapters)
    if dist.main:  # rank 0 speaks for the world
        log(
            f"harness eval: base {first.suite.models.base} loaded once for {len(entries)} suites, "
            f"{len(adapters)} adapter{'' if len(adapters) == 1 else 's'} attached"
        )
    results: list[EvalResult] = []
    for i, entry in enumerate(entries):
        close_log_file()  # each run directory keeps its own eval.log
        try:
            result = run_eval(
                entry.suite, entry.source, out_root, None, log, progress_bars, entry.sources, models, data[i]
            )
        except HarnessError as exc:
            raise _in_suite(exc, i, entries, results) from None
        results.append(result)
    return results


def check_one_base(entries: list[SuiteEntry]) -> None:
    """Suites evaluated together share one loaded base: the same model, quantization and placement."""
    first = entries[0]
    for entry in entries[1:]:
        for name in BASE_FIELDS:
            mine, theirs = getattr(entry.suite.models, name), getattr(first.suite.models, name)
            if mine != theirs:
                raise ConfigError(
                    f"{entry.source}: models.{name} {_shown(mine)!r} differs from {_shown(theirs)!r} of "
                    f"{first.source}; suites evaluated together share one base: pass --base (or --set "
                    f"models.{name}=...) for all, or evaluate them separately"
                )


def _shown(value):
    return value.model_dump() if hasattr(value, "model_dump") else value


def check_names(entries: list[SuiteEntry]) -> None:
    """Each suite once: the report tells runs apart by suite name."""
    seen: dict[str, str] = {}
    for entry in entries:
        name = entry.suite.name
        if name in seen:
            raise ConfigError(
                f"{entry.source}: suite name '{name}' is also that of {seen[name]}; give each suite once "
                "(or a suite its own field 'name')"
            )
        seen[name] = entry.source


def shared_adapters(entries: list[SuiteEntry]) -> dict[str, str]:
    """Every suite's adapters, attached once; one name must mean one adapter in every suite."""
    adapters: dict[str, str] = {}
    owner: dict[str, str] = {}
    for entry in entries:
        for name, path in entry.suite.models.adapters.items():
            if name in adapters and Path(adapters[name]).expanduser() != Path(path).expanduser():
                raise ConfigError(
                    f"{entry.source}: adapter '{name}' is {path} here but {adapters[name]} in {owner[name]}; "
                    "give the two adapters different names"
                )
            adapters.setdefault(name, path)
            owner.setdefault(name, entry.source)
    return adapters


def _read(i: int, entries: list[SuiteEntry]):
    """A suite's dataset read and checked before the base loads; a mistake names the suite."""
    try:
        return read_suite(entries[i].suite, entries[i].source)
    except HarnessError as exc:
        raise _in_suite(exc, i, entries, []) from None


def _in_suite(exc: HarnessError, i: int, entries: list[SuiteEntry], done: list[EvalResult]) -> HarnessError:
    """The error, one line, saying which suite failed and which finished runs are kept."""
    kept = f"; finished runs kept: {' '.join(str(r.run_dir) for r in done)}" if done else ""
    return type(exc)(f"suite {i + 1} of {len(entries)} ({entries[i].source}) failed: {exc}{kept}")
