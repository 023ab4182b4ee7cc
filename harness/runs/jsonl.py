"""JSONL files of records: one JSON object a line, appended whole as each record finishes.

`harness eval` keeps each model's records this way and `harness generate --out` its answers; a run that is
killed, or a disk that fills, costs at most the line being written, never the lines before it. Each
line is in the operating system's hands once written (a killed process keeps it); it reaches the disk
itself at least every `SYNC_EVERY_S` and at close, not after every record: a GPU answers a batch of
multiple-choice samples in milliseconds, and a sync per record cost seconds per thousand.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.runtime.files import write_failure

# The most a machine crash (not a killed process) may take of an appended file: this many seconds of lines.
SYNC_EVERY_S = 1.0


def dumps_record(record: dict) -> str:
    """One record as one line. ensure_ascii off keeps Korean readable; lone surrogates (from JSON escapes
    in a dataset) cannot be UTF-8, so they stay escaped."""
    text = json.dumps(record, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, ensure_ascii=True)
    return text


def read_jsonl_records(path: Path) -> tuple[list[dict], list[int]]:
    """(records, numbers of the lines that are not a JSON object), splitting on "\n" only, each line
    decoded on its own: a line cut inside a UTF-8 character spoils that line, not the file."""
    records, skipped = [], []
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped.append(number)
    return records, skipped


class RecordAppender:
    """Appends records to `path`, each written whole (synced as the module says) or not at all: a write that fails (a full
    disk) is cut back off, so the records before it stay a readable file. `where` starts its error messages
    (the option that named the file)."""

    def __init__(self, path: str | Path, where: str = ""):
        self.path = Path(path)
        self._where = where
        self._synced: float | None = None  # when the file was last synced (None: never)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise HarnessError(self._failure(exc)) from None
        end = os.lseek(self._fd, 0, os.SEEK_END)
        if end and os.pread(self._fd, 1, end - 1) != b"\n":  # a killed run left half a line: start a line of our own
            self._write_whole(b"\n", end)

    def __call__(self, record: dict) -> None:
        self._write_whole((dumps_record(record) + "\n").encode("utf-8"), os.lseek(self._fd, 0, os.SEEK_END))

    def close(self) -> None:
        try:
            if self._synced is not None:
                os.fsync(self._fd)
        except OSError as exc:
            raise HarnessError(self._failure(exc)) from None
        finally:
            os.close(self._fd)

    def _write_whole(self, data: bytes, start: int) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if self._synced is None or time.monotonic() - self._synced >= SYNC_EVERY_S:
                os.fsync(self._fd)
                self._synced = time.monotonic()
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass  # the reader leaves a torn last line out
            raise HarnessError(self._failure(exc)) from None

    def _failure(self, exc: OSError) -> str:
        return f"{self._where}{write_failure(self.path, exc)}"


def ends_with_newline(path: Path) -> bool:
    with Path(path).open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def line_count(path: Path) -> int:
    return Path(path).read_bytes().count(b"\n") + 1
