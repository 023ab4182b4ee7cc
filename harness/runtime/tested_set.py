"""The tested dependency set (`constraints/cpu.txt`, made by `constraints/lock.sh`) and the
installed packages whose versions lie outside it."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parents[2] / "constraints" / "cpu.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def normalize(name: str) -> str:
    """A distribution's name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """`name==version` lines of a lock file → {normalized name: version}."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def outside_tested_set(path: Path) -> list[tuple[str, str, str]] | None:
    """(name, installed, tested) for each installed package of the lock at another version, sorted by
    name; None where there is no lock (harness installed from a wheel, not a source checkout).
    A local version label (torch's +cpu or +cu130) is a build of the same release, not another version."""
    from packaging.version import InvalidVersion, Version

    if not path.is_file():
        return None
    tested = read_lock(path)
    found = {}
    for dist in importlib.metadata.distributions():
        name = normalize(dist.metadata["Name"] or "")
        if name not in tested or name in found:
            continue
        try:
            same = Version(dist.version).public == Version(tested[name]).public
        except InvalidVersion:
            same = dist.version == tested[name]
        if not same:
            found[name] = (name, dist.version, tested[name])
    return [found[name] for name in sorted(found)]
