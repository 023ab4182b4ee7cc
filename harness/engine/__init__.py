"""Running models: requests in, results out (harness.engine.requests, harness.engine.run) —
generation, the log-likelihood of a continuation, the rolling log-likelihood of a text."""
