"""`harness train`: QLoRA supervised fine-tuning."""
