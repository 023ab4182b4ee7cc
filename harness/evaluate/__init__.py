"""`harness eval`: one base load, every adapter attached, each model scored on a suite."""
