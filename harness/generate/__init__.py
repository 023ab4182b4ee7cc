"""`harness generate` and `harness chat`: your own prompts through the base and its adapters."""
