"""How a dataset is read: the settings a train `data` section and a suite `dataset` section share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.config.loader import Strict, drop_defaults

# The reader fields at these values leave a run's id as it was before they existed.
READER_DEFAULTS = {"sample": "random", "name": None, "data_files": None, "revision": None}


class ReaderSettings(Strict):
    format: Literal["auto", "korquad", "squad", "json", "jsonl", "csv", "tsv", "parquet", "disk", "hub"] = Field(
        "auto",
        description="auto: from the content and name: a `.json` list of records, SQuAD/KorQuAD JSON (a top-level "
        "`data` list of articles) or JSON Lines; `.jsonl`, `.csv`, `.tsv`, `.parquet`; a `save_to_disk` "
        "folder (`disk`); anything else `hub` (`datasets.load_dataset`: a hub id or a local folder of files)",
    )
    sample: Literal["random", "first"] = Field(
        "random", description="which `limit` examples: a seeded random sample (file order kept), or the first ones"
    )
    name: str | list[str] | None = Field(
        None,
        description="hub datasets: the configuration (subset) name, or a list of them read as one dataset "
        "whose rows get a `config` column and ids `CONFIG/N` (a local copy: one file with that column)",
    )
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="hub datasets or local folders: the files to read (`datasets.load_dataset`'s `data_files`)"
    )
    revision: str | None = Field(None, description="hub datasets: a branch, tag or commit")


def drop_reader_defaults(section: dict) -> dict:
    """A dumped `data`/`dataset` section without the reader fields at their defaults (`drop_defaults`)."""
    return drop_defaults(section, READER_DEFAULTS)
