"""The process's surroundings: hardware, distributed ranks, the terminal, files."""
