"""The lock (constraints/cpu.txt) and pyproject.toml name the same dependencies, and `harness
doctor` names every installed package outside the lock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from harness.runtime.tested_set import normalize, outside_tested_set, read_lock

tomllib = pytest.importorskip("tomllib")
REPO_ROOT = Path(__file__).resolve().parents[1]
# The checkout's lock, also where harness is installed from a wheel (tox) and cannot find one itself.
LOCK_FILE = REPO_ROOT / "constraints" / "cpu.txt"
REGENERATE = "run constraints/lock.sh, then the tests, and commit both files"


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def _locked_for_pyproject() -> set[str]:
    """The lock's packages whose `# via` list names pyproject.toml."""
    direct, current = set(), None
    for line in LOCK_FILE.read_text(encoding="utf-8").splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if pin:
            current = normalize(pin.group(1))
        elif current and "harness (pyproject.toml)" in line:
            direct.add(current)
    return direct


def test_every_dependency_of_pyproject_is_locked_within_its_range():
    pins = read_lock(LOCK_FILE)
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = normalize(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in constraints/cpu.txt: {REGENERATE}"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"constraints/cpu.txt pins {name}=={pins[name]}, outside pyproject.toml's {req}: {REGENERATE}"
        )


def test_the_lock_holds_no_dependency_that_pyproject_dropped():
    declared = {normalize(r.name) for r in _declared()}
    extra = _locked_for_pyproject() - declared
    assert not extra, f"constraints/cpu.txt still lists {sorted(extra)} for pyproject.toml: {REGENERATE}"


def test_the_lock_is_for_the_cpu_build_of_torch():
    pins = read_lock(LOCK_FILE)
    assert not any(name.startswith(("nvidia-", "cuda-")) for name in pins), "a CUDA package in the CPU lock"
    # README's commands, CI and tox install torch before the package: the same release as the lock's.
    torch = pins["torch"]
    for path in ("README.md", ".ci/run", "tox.ini", "constraints/cpu.in"):
        pinned = set(re.findall(r"torch==([0-9][0-9.]*[0-9])", (REPO_ROOT / path).read_text(encoding="utf-8")))
        assert pinned == {torch}, f"{path} installs torch {pinned}, the lock has {torch}"


def test_doctor_names_each_installed_package_outside_the_tested_set(tmp_path, monkeypatch, run_cli):
    import importlib.metadata

    lock = tmp_path / "cpu.txt"
    lock.write_text(
        "torch==0.0.1\n    # via harness (pyproject.toml)\n"
        f"PyYAML=={importlib.metadata.version('pyyaml')}\n"
        f"torch-is-a-prefix-not-a-match==1.0\n",
        encoding="utf-8",
    )
    assert outside_tested_set(lock) == [("torch", importlib.metadata.version("torch"), "0.0.1")]
    assert outside_tested_set(tmp_path / "absent.txt") is None

    monkeypatch.setattr("harness.runtime.tested_set.LOCK_FILE", lock)
    code, out, _err = run_cli(["doctor"])
    assert code == 0
    lines = [line.split() for line in out.splitlines() if line.startswith("untested")]
    assert lines == [["untested", "torch", importlib.metadata.version("torch"), "(tested:", "0.0.1)"]], out


def test_local_version_labels_are_builds_of_the_same_release(tmp_path):
    import importlib.metadata

    installed = Version(importlib.metadata.version("torch")).public
    lock = tmp_path / "cpu.txt"
    lock.write_text(f"torch=={installed}+cu130\n", encoding="utf-8")
    assert outside_tested_set(lock) == []
