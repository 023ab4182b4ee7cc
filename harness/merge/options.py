"""What `harness merge` accepts, in a module light enough for the CLI's parser (no torch)."""

METHODS = ("linear", "cat", "ties", "dare_linear", "dare_ties")
DTYPES = ("bf16", "fp16", "fp32")
DENSITY_METHODS = {"ties", "dare_linear", "dare_ties"}  # the methods that keep a `density` of the weights
