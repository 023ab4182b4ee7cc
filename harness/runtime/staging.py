"""Temporary folders beside an output (.NAME-xxxx), renamed into place only when complete.

Each holds a file naming the process that writes it, so that the next command writing the same
output can remove what a killed one left (a merge killed mid-export leaves gigabytes) without
touching a folder another running command is still filling.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path

OWNER_FILE = ".harness-owner-pid"


def staging_dir(out: Path) -> Path:
    """A new temporary folder beside `out`, after removing stale ones of the same name."""
    remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    (tmp / OWNER_FILE).write_text(str(os.getpid()), encoding="utf-8")
    return tmp


def release(tmp: Path) -> None:
    """Before the rename into place: the owner file is no part of the output."""
    (tmp / OWNER_FILE).unlink(missing_ok=True)


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporary folders for `out` whose writer is no longer running (or is unknown: an
    older harness wrote no owner file); returns what was removed."""
    removed = []
    prefix = f".{Path(out).name}-"
    # mkdtemp's suffix is 8 characters: `.m-v2-abcd1234` belongs to --out m-v2, not to m
    for tmp in Path(out).parent.glob(glob.escape(prefix) + "?" * 8):
        try:
            alive = _running(int((tmp / OWNER_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            alive = False
        if tmp.is_dir() and not alive:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # left by an earlier command of this same process (tests call main in-process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
