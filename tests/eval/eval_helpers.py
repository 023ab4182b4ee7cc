"""Plain helpers shared by the eval tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from support import one_torch_thread

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITES = REPO_ROOT / "suites"
PRESET = REPO_ROOT / "harness" / "data" / "presets" / "tiny-ko-qa.yaml"
ADAPTER_NAME = "tiny"

# Small but real: 12 KorQuAD-style samples, 12 new tokens, base + adapter.
QA_LIMIT = 12
QA_NEW_TOKENS = 12

# One tiny adapter for the session: the preset's settings, shortened.
ADAPTER_TRAINING = {
    "data.limit": 8,
    "data.validation_fraction": 0,
    "training.max_steps": 30,
    "training.batch_size": 4,
    "training.learning_rate": 0.003,
    "training.logging_steps": 5,
    "training.save_steps": 1000,
    "lora.target_modules": "all-linear",
}


def quiet(*_args, **_kwargs) -> None:
    pass


def train_adapter(output_dir: Path, **overrides):
    from harness.config import TrainConfig, load_config
    from harness.train.recipe import train

    config = load_config(TrainConfig, PRESET, {"output_dir": str(output_dir), **ADAPTER_TRAINING, **overrides})
    with one_torch_thread():
        return train(config, overwrite=True)


def read_records(run_dir: Path, model: str) -> list[dict]:
    path = Path(run_dir) / "records" / f"{model}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_results(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text(encoding="utf-8"))


def qa_overrides(**extra) -> dict:
    return {"dataset.limit": QA_LIMIT, "generation.max_new_tokens": QA_NEW_TOKENS, "batch_size": 8, **extra}
