"""One GPU standing in for N: what a data-parallel eval gives each rank, run rank after rank.

`harness eval --num-processes N` deals whole batches to the ranks (harness.engine.batching.deal), so
each prompt meets the rows, shapes and kernels a single process gives it. This checks that on the
GPU kind a rank would run on, without N of them: every rank's share runs in turn in this process,
through the eval task's real `run` with a stand-in for the process group, and the merged answers are
compared with one process's. Two identical one-process runs are compared too: the decoding steps'
attention must repeat exactly for any of this to hold. The projected ratio is one process's wall
time over the slowest rank's (process start and the gather of records left out): a projection,
not a measurement on N GPUs (`gpu.py scale` is that).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class _Rank:
    """The part of harness.runtime.distributed.Dist that generation uses, for one rank of `world`."""

    rank: int
    world: int

    def all_gather(self, obj):
        return [obj] * self.world  # one GPU kind: every rank would report the same free memory


def bench_shares(
    base: str, adapter: str, data: str, smoke: bool, samples: int, worlds=(2, 4), figures: dict | None = None
) -> dict:
    import torch
    from bench_eval import _suite

    from harness.engine import fused
    from harness.evaluate.execute import run_task
    from harness.evaluate.plan import resolve_dataset
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect
    from harness.tasks import get_task

    figures = figures if figures is not None else {}
    suite = _suite(base, adapter, data, 24 if smoke else samples, 8 if smoke else 32, 4 if smoke else None, {})
    task = get_task(suite.task)
    base_model = load_base(suite.models.base, suite.models.quantization, detect())
    models = attach_adapters(base_model, suite.models.adapters)
    requests = task.build_requests(suite, resolve_dataset(suite, "suite").examples, base_model.tokenizer, [])
    batch = None if suite.batch_size == "auto" else suite.batch_size
    figures["samples"] = len(requests)

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    with models.dense():
        for name in ("base", "adapter"):
            with models.use(name) as model:
                fused.warm_up(model)

                def run(shard):
                    got: dict = {}
                    sync()
                    started = time.perf_counter()
                    run_task(
                        task,
                        model,
                        base_model.tokenizer,
                        suite,
                        requests,
                        batch,
                        lambda record: got.__setitem__(record["id"], record["output"]),
                        None,
                        shard=shard,
                    )
                    sync()
                    return got, time.perf_counter() - started

                single, wall = run(None)
                again, _ = run(None)
                row = {
                    "one_process_wall_s": round(wall, 3),
                    "one_process_prompts_per_s": round(len(requests) / wall, 1),
                    "repeat_outputs_differing": sum(again[i] != single[i] for i in single),
                }
                for world in worlds:
                    merged, walls = {}, []
                    for rank in range(world):
                        got, rank_wall = run(_Rank(rank, world))
                        assert not merged.keys() & got.keys(), "two ranks answered the same sample"
                        merged.update(got)
                        walls.append(round(rank_wall, 3))
                    row[f"world{world}"] = {
                        "rank_walls_s": walls,
                        "missing": len(single) - len(merged),
                        "outputs_differing": sum(merged.get(i) != single[i] for i in single),
                        "projected_ratio": round(wall / max(walls), 3),
                    }
                figures[name] = row
                print(f"shares {name}: {row}", flush=True)
    return figures
