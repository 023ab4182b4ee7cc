"""harness: QLoRA fine-tuning and trustworthy evaluation, base and adapters side by side."""

__version__ = "0.1.0"
