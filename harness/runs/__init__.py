"""Run directories: the store, per-sample records, rescoring and the summary tables."""
