"""What the hardware is, and the defaults that follow from it (compute dtype, batch sizes)."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import asdict, dataclass, field

LIBRARIES = ["torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "harness"]


@dataclass(frozen=True)
class Environment:
    device: str  # cuda | mps | cpu
    device_name: str
    cuda_capability: str | None
    bf16_supported: bool
    gpu_memory_bytes: int | None
    bitsandbytes_backend: str | None
    cpu_count: int
    python: str
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def detect() -> Environment:
    import os

    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        device, name = "cuda", props.name
        capability = f"{props.major}.{props.minor}"
        bf16 = bool(torch.cuda.is_bf16_supported())
        memory = int(props.total_memory)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device, name, capability, bf16, memory = "mps", "Apple MPS", None, False, None
    else:
        device, name, capability, memory = "cpu", platform.processor() or platform.machine(), None, None
        bf16 = False  # bf16 matmuls on most CPUs are emulated and slower than fp32
    return Environment(
        device=device,
        device_name=name,
        cuda_capability=capability,
        bf16_supported=bf16,
        gpu_memory_bytes=memory,
        bitsandbytes_backend=_bnb_backend(device),
        cpu_count=os.cpu_count() or 1,
        python=platform.python_version(),
        versions=library_versions(),
    )


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


HUB_KERNELS_SWITCH = "HARNESS_HUB_KERNELS"
_HUB_KERNEL_LOADERS = ("get_kernel", "get_locked_kernel", "load_kernel", "install_kernel", "has_kernel")


def block_hub_kernels() -> None:
    """Keep the `kernels` package from fetching binary code from the Hugging Face Hub.

    bitsandbytes' CPU backend, on import, asks `kernels` for a compiled 4-bit matmul from the hub
    (and transformers can ask it for others); harness fetches and runs no binary code the user did
    not ask for, so unless HARNESS_HUB_KERNELS=1 every loader that would download one refuses and
    the libraries fall back to the kernels they ship. Call before bitsandbytes is imported.
    """
    import importlib.util
    import os

    if os.environ.get(HUB_KERNELS_SWITCH) == "1" or importlib.util.find_spec("kernels") is None:
        return
    import kernels

    def refuse(*_args, **_kwargs):
        raise RuntimeError(
            f"harness: kernels from the Hugging Face Hub are off; set {HUB_KERNELS_SWITCH}=1 "
            "to let libraries download and run them"
        )

    for name in _HUB_KERNEL_LOADERS:
        if hasattr(kernels, name):
            setattr(kernels, name, refuse)


def _bnb_backend(device: str) -> str | None:
    block_hub_kernels()
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # a broken install should not stop `doctor` from reporting it
        return None
    # bitsandbytes >= 0.45 dispatches per device: CUDA kernels on GPUs, native CPU kernels otherwise.
    return "cuda" if device == "cuda" else device


def compute_dtype_name(env: Environment, requested: str = "auto") -> str:
    """bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU."""
    if requested != "auto":
        return requested
    if env.device == "cuda":
        return "bf16" if env.bf16_supported else "fp16"
    return "fp32"


def train_batch_size(env: Environment) -> int:
    if env.device != "cuda" or not env.gpu_memory_bytes:
        return 4
    gib = env.gpu_memory_bytes / 2**30
    return 4 if gib < 20 else 8 if gib < 40 else 16


def liger_available() -> bool:
    """Whether Liger's kernels can be applied: the same check the Trainer makes before applying them."""
    try:
        from transformers.utils import is_liger_kernel_available
    except ImportError:
        return False
    return bool(is_liger_kernel_available())


def free_cuda_memory(device: int = 0) -> int:
    """Bytes a new allocation can still get on `device`: free on the card plus what torch's caching
    allocator holds but no tensor uses."""
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def release_cuda_memory() -> None:
    """Drop unreachable tensors and hand torch's cached blocks back, so the next allocation (or a
    memory reading) sees them; a no-op without CUDA."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def eval_batch_size(env: Environment) -> int:
    if env.device != "cuda" or not env.gpu_memory_bytes:
        return 8
    gib = env.gpu_memory_bytes / 2**30
    # A 7B NF4 model with short prompts ran out of memory at twice the largest of these on an 80 GB
    # H100 (benchmarks/RESULTS.md); the engine still halves on out-of-memory, but a retry costs a batch.
    return 16 if gib < 20 else 32 if gib < 40 else 64


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def peak_memory_bytes(device: str) -> int:
    """Peak GPU memory allocated on CUDA; the process's peak resident memory elsewhere."""
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
