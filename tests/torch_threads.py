"""One torch thread for the tiny models' tests, shared by the test folders' helpers."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread: the machine's 2 cores are shared, and with 2 threads per
    process oversubscription makes the tiny model 10-40x slower (OMP spin waits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
