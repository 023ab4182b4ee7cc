"""Files harness writes: atomic JSON writes, the messages for failed writes, the cache folder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from harness.errors import HarnessError, os_error_fix


def atomic_write_json(path: Path, data) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise HarnessError(write_failure(path, exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise HarnessError(write_failure(path, exc)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_failure(path: Path, exc: OSError) -> str:
    """One line for a write that failed: the file, the reason, and what to do about it."""
    return f"{path}: cannot write ({exc.strerror or type(exc).__name__}); {os_error_fix(exc)}"


def cache_root() -> Path:
    """Where harness keeps what it builds and remembers (`HARNESS_CACHE`, else ~/.cache/harness)."""
    root = os.environ.get("HARNESS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "harness")
    return Path(root)
