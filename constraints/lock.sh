#!/usr/bin/env bash
# Regenerate constraints/cpu.txt, the tested dependency set of a CPU install: every package that
# pyproject.toml (with all extras) and constraints/cpu.in resolve to, transitive ones included.
#
#   constraints/lock.sh          from the repository root, after changing a dependency
#
# Then run the tests (README command 2, in a new venv) before committing the new lock: the lock
# promises that this set passed. `tox -e latest` runs the suite without the lock instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools" && "$tools/bin/pip" install -q uv==0.13.9
# The CPU wheel of torch: a local wheel directory where pip is configured with one (this project's
# machines), else PyTorch's CPU index.
links="$(python3 -m pip config get global.find-links 2>/dev/null || true)"
if [ -n "$links" ]; then source=(--find-links "$links"); else
  source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match); fi
"$tools/bin/uv" pip compile pyproject.toml constraints/cpu.in --all-extras --python-version 3.11 \
  "${source[@]}" --upgrade-package torch --no-emit-find-links --no-emit-index-url --custom-compile-command constraints/lock.sh \
  -q -o constraints/cpu.txt
# A local version label (+cpu) would refuse the same release installed from another index (the
# CPU-only wheels of PyPI on macOS and Windows); --upgrade-package torch above keeps this pin from
# steering the next resolve to the CUDA build of the same version.
sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+$/\1/' constraints/cpu.txt
echo "constraints/cpu.txt: $(grep -c '^[A-Za-z0-9]' constraints/cpu.txt) packages pinned"
