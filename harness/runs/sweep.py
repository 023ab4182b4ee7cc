"""A sweep's record, `SWEEP_DIR/sweep.json`: `harness train --sweep` writes it, `harness eval --sweep`
reads it. Kept here, below both, so the two agree on one shape:

  fields   swept field → its values, in the order given
  points   one entry per point: name, dir (relative to the sweep directory), values (field → value),
           status (pending, running, ok, failed), error, train_loss, eval_loss, runtime_s, steps
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import ConfigError

SWEEP_FILE = "sweep.json"
STATUSES = ("pending", "running", "ok", "failed")


def read_sweep(directory: str | Path, where: str = "--sweep") -> dict:
    """The sweep record of `directory`, its shape checked so a damaged file is one line, not a crash."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(
            f"{where} {path}: no such directory; pass the output_dir of a `harness train CONFIG --sweep FIELD=...` run"
        )
    file = path / SWEEP_FILE
    if not file.is_file():
        raise ConfigError(f"{where} {path}: no {SWEEP_FILE} in it; pass a directory written by harness train --sweep")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{file}: cannot be read ({type(exc).__name__}); train the sweep again") from None
    _check_shape(data, file)
    return data


def _check_shape(data, file: Path) -> None:
    fix = "train the sweep again (harness train CONFIG --sweep ...) to rewrite it"
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a JSON object; {fix}")
    fields = data.get("fields")
    if not isinstance(fields, dict) or not fields or not all(isinstance(v, list) for v in fields.values()):
        raise ConfigError(f"{file}: field 'fields' is not an object of value lists; {fix}")
    points = data.get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"{file}: field 'points' is not a list of objects; {fix}")
    for i, point in enumerate(points):
        if not isinstance(point.get("name"), str) or not isinstance(point.get("dir"), str):
            raise ConfigError(f"{file}: points[{i}] has no name or dir; {fix}")
        if not isinstance(point.get("values"), dict) or set(point["values"]) != set(fields):
            raise ConfigError(f"{file}: points[{i}].values does not name every swept field; {fix}")
        if point.get("status") not in STATUSES:
            raise ConfigError(f"{file}: points[{i}].status is not one of {', '.join(STATUSES)}; {fix}")


def point_dir(directory: str | Path, point: dict) -> Path:
    """A point's adapter directory: inside the sweep directory, wherever that has been moved."""
    path = Path(directory) / point["dir"]
    if Path(point["dir"]).is_absolute() or ".." in Path(point["dir"]).parts:
        raise ConfigError(f"{Path(directory) / SWEEP_FILE}: point '{point['name']}' has a dir outside the sweep")
    return path
