"""What a model directory holds, as one hash: the resume key of a base, so records made by another
model at the same path (an export merged again in place, a checkpoint replaced) are never reused.

A file's hash is cached by its identity (real path, size, modification time, inode), so an unchanged
base is read once, not at every eval; a file in the Hugging Face cache is named by its own hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from harness.errors import HarnessError
from harness.runtime.files import atomic_write_json, cache_root

# What can change a model's outputs: weights, configs, tokenizer files, templates, remote code.
CONTENT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt", ".jinja", ".tiktoken", ".py")
# Written beside a model by harness or by hand; none changes what it computes.
NOT_CONTENT = {"merge_record.json", "train_record.json", "README.md"}
_HUB_BLOB = re.compile(r"[0-9a-f]{64}")
_CACHE_FILE = "file-hashes.json"


def directory_sha256(path: str | Path, announce=None) -> str:
    """The hash of every content file directly in `path` (names and hashes, in name order).
    `announce(bytes)` is called first when more than a gigabyte must be read to compute it."""
    files = sorted(
        p for p in Path(path).iterdir() if p.is_file() and p.suffix in CONTENT_SUFFIXES and p.name not in NOT_CONTENT
    )
    cache = _read_cache()
    todo = [f for f in files if _known(f, cache) is None]
    if announce is not None and (size := sum(f.stat().st_size for f in todo)) > 2**30:
        announce(size)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{_file_sha256(file, cache)}\n".encode())
    if todo:
        _write_cache(cache)
    return digest.hexdigest()


def _identity(file: Path) -> str:
    real = os.path.realpath(file)
    stat = os.stat(real)
    return f"{real}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"


def _known(file: Path, cache: dict) -> str | None:
    real = Path(os.path.realpath(file))
    if real.parent.name == "blobs" and _HUB_BLOB.fullmatch(real.name):
        return real.name  # the hub cache stores a large file under its sha256
    return cache.get(_identity(file))


def _file_sha256(file: Path, cache: dict) -> str:
    known = _known(file, cache)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    cache[_identity(file)] = digest.hexdigest()
    return cache[_identity(file)]


def _cache_path() -> Path:

    return cache_root() / _CACHE_FILE


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a missing or damaged cache costs one more read of the weights, nothing else
    return data if isinstance(data, dict) else {}


def _write_cache(cache: dict) -> None:

    try:
        atomic_write_json(_cache_path(), cache)
    except (OSError, HarnessError):  # atomic_write_json reports a failed write as a HarnessError
        pass  # an unwritable cache (a full disk) only means hashing again next time
