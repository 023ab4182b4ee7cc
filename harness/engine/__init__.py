"""Running models: batched generation, the static decoder, shared prefixes, likelihoods."""
