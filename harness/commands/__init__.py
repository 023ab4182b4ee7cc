"""One module per CLI command: its options (`register`) and its thin `run`."""
