"""Plain helpers every test folder shares: one torch thread, and stderr without progress bars."""

from __future__ import annotations

import contextlib
import re

# A tqdm bar as a terminal shows it ("base: 40%|████ | 4/10 ..."): progress, not a message.
TQDM_LINE = re.compile(r"^[^|]*:\s*\d+%\|.*\|")


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


def message_lines(stderr: str) -> list[str]:
    """stderr's lines as a terminal leaves them visible, without progress bars."""
    lines = []
    for raw in stderr.splitlines():
        shown = raw.split("\r")[-1].strip()
        if shown and not TQDM_LINE.match(shown):
            lines.append(shown)
    return lines
