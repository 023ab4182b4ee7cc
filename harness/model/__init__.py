"""The model stack: loading a base (4-bit or not), adapters, families, tiny models, dequantization."""
