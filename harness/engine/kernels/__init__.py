"""Triton and fused kernels the engine's forwards call (torch and triton only)."""
