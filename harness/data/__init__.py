"""Datasets in: readers, the built-in assets and presets, prompt templates."""
