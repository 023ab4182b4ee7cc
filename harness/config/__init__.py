"""Typed configs loaded from YAML (pydantic models, unknown keys rejected)."""

from harness.config.generation import GenerationSettings
from harness.config.loader import load_config, parse_set_option, validate
from harness.config.model import Quantization
from harness.config.suite import SuiteConfig
from harness.config.train import DataSettings, LoraSettings, TrainConfig, TrainingSettings

__all__ = [
    "DataSettings",
    "GenerationSettings",
    "LoraSettings",
    "Quantization",
    "SuiteConfig",
    "TrainConfig",
    "TrainingSettings",
    "load_config",
    "parse_set_option",
    "validate",
]
