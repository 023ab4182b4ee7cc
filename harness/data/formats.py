"""Readers of the tabular and Arrow shapes: CSV/TSV, parquet and `save_to_disk` folders (hub datasets:
harness.data.hub)."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from harness.errors import DataError

# A `datasets.save_to_disk` folder holds one of these (a Dataset the first two, a DatasetDict the last).
DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_disk_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in DISK_MARKERS)


def read_delimited(text: str, source: str, delimiter: str) -> list[dict]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise DataError(f"{source}: malformed {kind} ({exc}); fix the file") from None
    for number, row in enumerate(rows, start=1):
        row.setdefault("id", str(number))
    return rows


def read_parquet(file: Path, source: str) -> list[dict]:
    import pyarrow
    import pyarrow.parquet

    try:
        rows = pyarrow.parquet.read_table(file).to_pylist()
    except (pyarrow.ArrowException, OSError) as exc:
        raise DataError(f"{source}: cannot read as parquet ({first_line(exc)}); give a .parquet file") from None
    return _numbered(rows)


def read_disk(folder: Path, source: str, split: str, where: str) -> tuple[list[dict], str]:
    """A `save_to_disk` folder: a Dataset, or a DatasetDict from which `split` is taken."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises many types; all mean "not a readable saved dataset"
        raise DataError(f"{source}: cannot load the save_to_disk folder ({where}): {first_line(exc)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(
                f"{source}: no split '{split}' in the saved dataset ({where}); splits are: {', '.join(loaded)}"
            )
        loaded = loaded[split]
    return _numbered([dict(row) for row in loaded]), hashlib.sha256(loaded._fingerprint.encode()).hexdigest()


def _numbered(rows: list[dict]) -> list[dict]:
    for number, row in enumerate(rows, start=1):
        row.setdefault("id", str(number))
    return rows


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
