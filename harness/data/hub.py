"""Hub datasets (`datasets.load_dataset`: a hub id or a local folder of files), of one configuration or
several: each configuration named in a list is read in turn and its rows say which one they came from."""

from __future__ import annotations

import hashlib
import os

from harness.data.formats import first_line
from harness.errors import DataError

# The column naming a row's configuration when a suite reads several (KMMLU's 45 subjects); a local copy
# of such a dataset (one file) carries the same column.
CONFIG_COLUMN = "config"


def read_hub(path: str, split: str, where: str, hub: dict, local_hint: str | None = None) -> tuple[list[dict], str]:
    """`hub`: load_dataset's name (one, or a list), data_files and revision. Rows are numbered from 0 as
    they always were (the ids are in existing runs' record keys); with a list of names the ids are
    `CONFIG/N` and every row gets a `config` column."""
    name = hub.get("name")
    if not isinstance(name, list):
        rows, fingerprint = _load(path, split, where, hub, local_hint)
        return _numbered(rows), hashlib.sha256(fingerprint.encode()).hexdigest()
    if not name:
        raise DataError(f"{path}: dataset.name is an empty list ({where}); name at least one configuration")
    examples, fingerprints = [], []
    for config in name:
        rows, fingerprint = _load(path, split, where, {**hub, "name": config}, local_hint)
        for number, row in enumerate(rows):
            if CONFIG_COLUMN in row:
                raise DataError(
                    f"{path}: configuration '{config}' has its own '{CONFIG_COLUMN}' column ({where}); "
                    "several configurations can only be read into one suite without it"
                )
            row[CONFIG_COLUMN] = config
            row.setdefault("id", f"{config}/{number}")
        examples += rows
        fingerprints.append(f"{config}:{fingerprint}")
    return examples, hashlib.sha256("\n".join(fingerprints).encode()).hexdigest()


def _load(path: str, split: str, where: str, hub: dict, local_hint: str | None) -> tuple[list[dict], str]:
    import datasets

    options = {key: value for key, value in hub.items() if value is not None}
    try:
        ds = datasets.load_dataset(path, split=split, **options)
    except Exception as exc:  # datasets raises many types; all mean "cannot get this dataset"
        shown = "".join(f", {key} {value}" for key, value in options.items())
        what = f"{path}: cannot load dataset split '{split}'{shown} ({where})"
        if os.path.isdir(path):
            raise DataError(f"{what}: {first_line(exc)}") from None
        local = f"give a local copy ({local_hint or 'its path'}: see docs/tasks.md, local copies)"
        if _offline():
            raise DataError(
                f"{what}: it is not in the local cache and the hub is offline (HF_HUB_OFFLINE); run once online "
                f"to cache it, or {local}"
            ) from None
        raise DataError(f"{what}: {first_line(exc)}; or {local}") from None
    return [dict(row) for row in ds], ds._fingerprint


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get(name, "").upper() for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(flag in ("1", "ON", "YES", "TRUE") for flag in flags)


def _numbered(rows: list[dict]) -> list[dict]:
    for number, row in enumerate(rows):
        row.setdefault("id", str(number))
    return rows
