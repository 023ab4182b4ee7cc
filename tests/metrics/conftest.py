"""Keep metric tests offline and importable from a plain checkout."""

import os
import sys
import tempfile
from pathlib import Path

# Must be set before `evaluate`/`datasets` are imported anywhere in the run.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"
# evaluate copies loaded module files into this cache (and puts it on
# sys.path once per process), so one throwaway dir for the whole run.
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="harness-hf-modules-"))

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
