"""Metrics a user writes: `FILE.py:FUNCTION` or `package.module:FUNCTION`, a per-sample function
`(prediction, references) -> float` that gets intervals, deltas, the report and rescore as the
built-in metrics do. The file's sha256 goes into the metric's version, so a rescore after the file
changed says so in its results."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path

from harness.metrics.errors import MetricError

_FORMS = "write FILE.py:FUNCTION (a path from the current directory) or package.module:FUNCTION"


def is_user_metric(name: str) -> bool:
    return ":" in name


def load_user_function(spec: str) -> tuple[Callable, str]:
    """(the function, its version: where it came from and the sha256 of its file)."""
    where, _, function = spec.rpartition(":")
    if not where or not function.isidentifier():
        raise MetricError(f"metric {spec!r}: {_FORMS}")
    module, path = _import_file(spec, where) if _is_file(where) else _import_module(spec, where)
    fn = getattr(module, function, None)
    if not callable(fn):
        raise MetricError(f"metric {spec!r}: {where} defines no function {function!r}; {_FORMS}")
    try:
        inspect.signature(fn).bind("prediction", ["reference"])
    except TypeError:
        raise MetricError(
            f"metric {spec!r}: {function} must take (prediction, references) and return a number"
        ) from None
    except ValueError:  # a builtin without a signature: it is called as it is
        pass
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path else "unknown"
    return fn, f"{where}:{function} sha256 {digest}"


def checked(spec: str, fn: Callable) -> Callable[[str, list[str]], float]:
    """`fn` whose every value is checked to be a finite number, naming the metric otherwise."""

    def per_sample(prediction: str, references: list[str]) -> float:
        value = fn(prediction, list(references))
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise MetricError(f"metric {spec!r} returned {value!r}; return a finite number for every sample")
        return float(value)

    return per_sample


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _import_file(spec: str, where: str):
    path = Path(where)
    if not path.is_file():
        raise MetricError(f"metric {spec!r}: no file {where} (from {Path.cwd()}); {_FORMS}")
    name = "harness_user_metric_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: whatever it raises is reported in one line
        raise MetricError(f"metric {spec!r}: importing {where} failed: {type(exc).__name__}: {exc}") from None
    return module, path


def _import_module(spec: str, where: str):
    try:
        module = importlib.import_module(where)
    except Exception as exc:  # the user's code: whatever it raises is reported in one line
        raise MetricError(f"metric {spec!r}: importing module {where} failed: {type(exc).__name__}: {exc}") from None
    source = getattr(sys.modules.get(where), "__file__", None)
    return module, Path(source) if source else None
