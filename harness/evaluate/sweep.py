"""`harness eval SUITE --sweep DIR`: a training sweep's finished adapters as the suite's models, named
after their points, as a user listing them under `models.adapters` would have them; and the sweep's
fields and each model's values, which results.json carries for the report's plots."""

from __future__ import annotations

from pathlib import Path

from harness.config.loader import check_name
from harness.errors import ConfigError
from harness.runs.sweep import SWEEP_FILE, point_dir, read_sweep


def sweep_models(directory: str | Path) -> tuple[dict[str, str], dict]:
    """({point name: adapter directory} of the finished points, the sweep description for results.json)."""
    record = read_sweep(directory)
    adapters: dict[str, str] = {}
    values: dict[str, dict] = {}
    for point in record["points"]:
        path = point_dir(directory, point)
        if point["status"] != "ok" or not (path / "adapter_config.json").is_file():
            continue
        name = point["name"]
        try:
            check_name(name, "sweep point name")
        except ValueError as exc:
            raise ConfigError(f"{Path(directory) / SWEEP_FILE}: {exc}") from None
        if name == "base":
            raise ConfigError(f"{Path(directory) / SWEEP_FILE}: a point is named 'base'; train the sweep again")
        adapters[name] = str(path)
        values[name] = point["values"]
    if not adapters:
        statuses = ", ".join(f"{p['name']}: {p['status']}" for p in record["points"]) or "no points"
        raise ConfigError(
            f"--sweep {directory}: no finished point to evaluate ({statuses}); finish the sweep with "
            "`harness train CONFIG --sweep ... --resume`"
        )
    return adapters, {"dir": str(directory), "fields": record["fields"], "points": values}
