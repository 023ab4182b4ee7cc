"""Memory over training steps. At every logging step a Trainer callback adds the memory the run used to
that step's log entry: on CUDA the peak allocated and reserved GPU memory since the previous log, elsewhere
the process's resident memory at the log. The entry is the one the Trainer keeps in its log history (so
the train record's history and the checkpoints carry it) and the one TensorBoard's callback writes."""

from __future__ import annotations

from transformers import TrainerCallback

from harness.runtime.env import peak_memory_bytes

MIB = 2**20
# log key → what it measures; the report (harness.report.memory_chart) names the same keys.
GPU_ALLOCATED = "gpu_peak_allocated_mib"
GPU_RESERVED = "gpu_peak_reserved_mib"
PROCESS_RSS = "process_rss_mib"
MEMORY_KEYS = {
    GPU_ALLOCATED: "GPU memory allocated by tensors, peak since the previous log",
    GPU_RESERVED: "GPU memory held by torch's caching allocator, peak since the previous log",
    PROCESS_RSS: "resident memory of the process (RSS) at the log",
}


class MemoryLog(TrainerCallback):
    """Adds the memory figures to each training log entry. Resetting CUDA's peak counters at every log
    makes each figure the peak of its own interval; the run's peak across intervals is kept here."""

    def __init__(self) -> None:
        self.peak_allocated = 0
        self.peak_reserved = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if args.device.type == "cuda":
            self._read_cuda_peaks(args.device)  # what came before training (the load) counts towards the peak

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # evaluation and the closing summary have no step of their own
            return
        if args.device.type == "cuda":
            allocated, reserved = self._read_cuda_peaks(args.device)
            values = {GPU_ALLOCATED: _mib(allocated), GPU_RESERVED: _mib(reserved)}
        else:
            values = {PROCESS_RSS: _mib(resident_bytes())}
        logs.update(values)  # for the callbacks after this one: TensorBoard's, the progress log
        # The Trainer appended a copy of `logs` to its history just before calling on_log.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(values)

    def _read_cuda_peaks(self, device) -> tuple[int, int]:
        import torch

        allocated = int(torch.cuda.max_memory_allocated(device))
        reserved = int(torch.cuda.max_memory_reserved(device))
        torch.cuda.reset_peak_memory_stats(device)
        self.peak_allocated = max(self.peak_allocated, allocated)
        self.peak_reserved = max(self.peak_reserved, reserved)
        return allocated, reserved


def add_memory_log(trainer) -> None:
    """First among the callbacks, so that TensorBoard's and the progress log see the figures."""
    trainer.callback_handler.callbacks.insert(0, MemoryLog())


def memory_summary(trainer, device: str) -> dict:
    """The run's peak memory and what its history's memory series measure, for the train record."""
    watch = next((c for c in trainer.callback_handler.callbacks if isinstance(c, MemoryLog)), None)
    if device == "cuda":
        import torch

        allocated = max(watch.peak_allocated if watch else 0, peak_memory_bytes(device))
        reserved = max(watch.peak_reserved if watch else 0, int(torch.cuda.max_memory_reserved()))
        return {
            "kind": "gpu",
            "peak_bytes": allocated,
            "peak_reserved_bytes": reserved,
            "series": {key: MEMORY_KEYS[key] for key in (GPU_ALLOCATED, GPU_RESERVED)},
        }
    return {
        "kind": "process",
        "peak_bytes": peak_memory_bytes(device),  # the process's peak resident memory since it started
        "series": {PROCESS_RSS: MEMORY_KEYS[PROCESS_RSS]},
    }


def resident_bytes() -> int:
    """The process's resident memory now: VmRSS where /proc has it, the peak from getrusage otherwise."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return peak_memory_bytes("cpu")


def _mib(n: int) -> float:
    return round(n / MIB, 1)
