"""Data parallelism through accelerate and torch.distributed: no process management of our own.

`accelerate launch [--num_processes N] [--num_machines M ...] -m harness eval|generate|train ...`
starts the processes and sets RANK / WORLD_SIZE / LOCAL_RANK; `Dist.current()` joins the process
group through accelerate's `PartialState` (gloo on CPU, NCCL on GPUs). Without those variables
everything is a world of one and no collective is ever called, so the single-process path is the
same code with `rank=0, world=1`.

`harness eval|generate|train --num-processes N` re-runs the same command line under
`accelerate launch` (accelerate's CLI, in a subprocess); it adds nothing accelerate does not do.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


def launched_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> Dist:
        """The launched world (joining its process group), or a world of one."""
        if launched_world_size() <= 1:
            return cls()
        import torch
        from accelerate import PartialState

        # cpu=True is what makes accelerate use gloo for a world of CPU processes (the Trainer asks the same).
        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(rank=state.process_index, world=state.num_processes, local_rank=state.local_process_index)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, items: list) -> list:
        """This rank's share: every world-th item from its rank (balanced when sorted by length)."""
        return items[self.rank :: self.world]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as tdist

            tdist.barrier()

    def all_gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as tdist

        out = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def union(self, part: dict) -> dict:
        """Every rank's `part` merged into one dict, on every rank."""
        merged = dict(part)
        for other in self.all_gather(part):
            merged.update(other)
        return merged


def rank_label() -> str | None:
    """`rank 1 of 2` inside a launched world of more than one process; None otherwise."""
    world = launched_world_size()
    if world <= 1:
        return None
    return f"rank {os.environ.get('RANK', '?')} of {world}"


def leave_process_group() -> None:
    """Shut this process's part of the group down before the interpreter exits. Left to exit, gloo's
    threads were once torn down while still joinable and a rank aborted ("terminate called without an
    active exception", exit -6) after its work was written, failing the whole launch."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


class TotalProgress:
    """Rank 0's progress bar counting every rank's finished samples.

    The other ranks append each finished record to their own shard file (flushed and synced), so
    rank 0 counts their new lines whenever its own bar moves; no collective is needed while the
    ranks generate different numbers of batches. Everything else is passed to the tqdm bar.
    """

    def __init__(self, bar, other_files: list[Path]):
        self._bar = bar
        self._files = other_files
        self._start = {p: _count_lines(p) for p in other_files}
        self._own = 0

    def update(self, n: int = 1) -> None:
        self._own += n
        others = sum(max(0, _count_lines(p) - self._start[p]) for p in self._files)
        self._bar.n = min(self._bar.total or 0, self._own + others) if self._bar.total else self._own + others
        self._bar.refresh()

    def finish(self) -> None:
        if self._bar.total:
            self._bar.n = self._bar.total
            self._bar.refresh()

    def __getattr__(self, name):
        return getattr(self._bar, name)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 16), b""))
    except OSError:
        return 0


# ----------------------------------------------------------------- --num-processes


def strip_option(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag VALUE` / `flag=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


def launch_command(argv: list[str], num_processes: int) -> list[str]:
    """`accelerate launch --multi_gpu` for `harness ARGV` on this machine: torchrun's processes, one per GPU,
    or gloo processes on CPU. (accelerate's `--cpu` launcher starts a single process unless it is given
    an MPI hostfile, so the torchrun launcher is the one for CPU worlds too.)"""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
    ]
    return cmd + ["-m", "harness", *argv]


def wants_relaunch(args) -> bool:
    n = getattr(args, "num_processes", None)
    return bool(n and n > 1 and launched_world_size() <= 1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
