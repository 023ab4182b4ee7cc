"""Where a choice suite's base column spends its time: the column's events in order (tokenizing,
grouping, planning, each of the first batches queued and answered), for the process's first eval and
its second, and on CUDA the kernels of a third under torch's profiler.

A column's rate says how fast it ran, not why; the event times say what the GPU waited for (the first
batch can only start once the texts are encoded and the batches planned), and the kernel table what
the GPU itself did. The events come from wrapping the engine's functions for the duration of the run.
"""

from __future__ import annotations

import contextlib
import time

# The first few calls of each wrapped function are recorded: the start is where the GPU waits.
FIRST_CALLS = 4
# (module, owner attribute or None, function, event name): what the timeline records.
EVENTS = [
    ("harness.engine.pretokenize", "Pretokenized", "__init__", "tokenize"),
    ("harness.engine.scoring", None, "group_rows", "group_rows"),
    ("harness.engine.prefix_choices", None, "take", "plan_prefixes"),
    ("harness.engine.batching", None, "release_cuda_memory", "release_cuda_memory"),
    ("harness.engine.batching", "Planner", "cut", "cut_batches"),
    ("harness.engine.cache", "SlotLayer", "lazy_initialization", "cache_alloc"),
    ("harness.engine.prefix_choices", None, "_prefill", "queue_batch"),
    ("harness.engine.prefix_choices", "Queued", "answer", "answer_batch"),
]


class Timeline:
    """Events (seconds since the column started, name) of the column running while `recording`."""

    def __init__(self):
        self.events: list[tuple[float, str]] = []
        self.started = 0.0
        self.calls: dict[str, int] = {}

    def mark(self, name: str) -> None:
        self.events.append((round(time.perf_counter() - self.started, 4), name))

    def wrap(self, function, name: str):
        def wrapped(*args, **kwargs):
            n = self.calls[name] = self.calls.get(name, 0) + 1
            if n <= FIRST_CALLS:
                self.mark(f"{name} #{n} start")
            try:
                return function(*args, **kwargs)
            finally:
                if n <= FIRST_CALLS:
                    self.mark(f"{name} #{n} end")

        return wrapped

    @contextlib.contextmanager
    def recording(self):
        """The engine's functions (EVENTS) and the column (`columns.generate`) wrapped; put back on exit."""
        import importlib

        from harness.evaluate import columns

        wrapped = []  # (owner, function, original, event name)
        for module, owner, function, name in EVENTS:
            target = importlib.import_module(module)
            target = getattr(target, owner) if owner else target
            wrapped.append((target, function, getattr(target, function), name))
        generate = columns.generate
        try:
            for target, function, original, name in wrapped:
                setattr(target, function, self.wrap(original, name))
            columns.generate = self._column(generate)
            yield self
        finally:
            for target, function, original, _ in wrapped:
                setattr(target, function, original)
            columns.generate = generate

    def _column(self, generate):
        def column(*args, **kwargs):
            self.events, self.calls, self.started = [], {}, time.perf_counter()
            self.mark("column start")
            try:
                return generate(*args, **kwargs)
            finally:
                self.mark("column end")

        return column


def choice_timeline(suite, source: str, work, figures: dict) -> dict:
    """Fills `figures` with the base column's timeline of a first and a second eval of `suite` (its
    base column only), and on CUDA the kernel table of a third."""
    import torch

    from harness.evaluate.run import run_eval

    base_only = suite.model_copy(update={"models": suite.models.model_copy(update={"adapters": {}}), "verify": 0})
    timeline = Timeline()
    for tag in ("cold", "warm"):
        with timeline.recording():
            result = run_eval(base_only, source, work / "runs", run_id=f"timeline-{tag}-{time.time_ns()}")
        wall = result.results["throughput"]["base"]["wall_s"]
        figures[f"timeline_{tag}"] = {"base_wall_s": wall, "events": timeline.events}
        print(f"[timeline {tag}] base column {wall:.2f} s", flush=True)
        for at, name in timeline.events:
            print(f"  {at:8.3f}  {name}", flush=True)
    if torch.cuda.is_available():
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            run_eval(base_only, source, work / "runs", run_id=f"timeline-kernels-{time.time_ns()}")
        figures["kernels"] = profiler.key_averages().table(
            sort_by="cuda_time_total", row_limit=25, max_name_column_width=80
        )
        print(figures["kernels"], flush=True)
    return figures
