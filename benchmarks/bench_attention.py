"""A decoding step's attention: harness.engine.kernels.decode_attention beside PyTorch's SDPA kernels.

For each shape (rows of one query, 32 heads of 128, a cache of `slots`), every path runs over
enough distinct layers' caches that L2 serves none of them, in a CUDA graph, as a decoding step
runs it. Reported per path: µs per layer, the cache bytes read per second, the largest difference
from an fp32 reference, and how many output elements changed over 8 identical calls (the
reproducibility a greedy eval's answers rest on). The mask hides each row's left padding (0-10 %
of the prompt) and the 16 slots past the current one, as in a batch of length-sorted prompts.
"""

from __future__ import annotations

import math

SHAPES = [(256, 352), (64, 352), (16, 352), (1, 288), (1, 512), (1, 1024)]
HEADS, SIZE = 32, 128
L2_BYTES = 256 << 20  # comfortably above an H100/H200's 50-60 MB of L2


def bench_attention(figures: dict) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu.py attention needs a CUDA GPU (the kernel is Triton's)")
    for rows, slots in SHAPES:
        row = _shape(rows, slots)
        figures[f"rows{rows}_slots{slots}"] = row
        print(
            f"rows {rows:>3}, slots {slots:>4}: "
            + "; ".join(
                f"{name} {r['us']:.1f} µs ({r['tb_s']:.2f} TB/s), max diff {r['max_diff']:.2g}, changed on repeat {r['changed']}"
                for name, r in row.items()
            ),
            flush=True,
        )


def _shape(rows: int, slots: int) -> dict:
    import torch

    from harness.engine.kernels.decode_attention import attention

    g = torch.Generator(device="cuda").manual_seed(0)
    per_layer = 2 * rows * HEADS * slots * SIZE * 2
    layers = max(2, min(32, math.ceil(L2_BYTES / per_layer)))
    q = [
        torch.randn(rows, 1, HEADS, SIZE, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)
        for _ in range(layers)
    ]
    k = [torch.randn(rows, HEADS, slots, SIZE, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(layers)]
    v = [torch.randn(rows, HEADS, slots, SIZE, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(layers)]
    valid = torch.ones(rows, slots, dtype=torch.bool, device="cuda")
    prompt = slots - 32
    pads = torch.randint(0, max(1, prompt // 10), (rows,), device="cuda", generator=g)
    valid &= torch.arange(slots, device="cuda")[None, :] >= pads[:, None]
    valid[:, slots - 16 :] = False
    mask = torch.zeros(rows, 1, 1, slots, dtype=torch.bfloat16, device="cuda").masked_fill_(
        ~valid[:, None, None, :], torch.finfo(torch.bfloat16).min
    )
    scale = 1 / math.sqrt(SIZE)
    reference = torch.softmax((q[0].float() @ k[0].float().transpose(-1, -2)) * scale + mask.float(), -1) @ v[0].float()
    reference = reference.transpose(1, 2)
    backends = torch.nn.attention.SDPBackend

    def sdpa(backend):
        def run(i):
            with torch.nn.attention.sdpa_kernel([backend]):
                out = torch.nn.functional.scaled_dot_product_attention(q[i], k[i], v[i], attn_mask=mask, scale=scale)
            return out.transpose(1, 2)

        return run

    paths = {
        "harness": lambda i: attention(q[i], k[i], v[i], mask, scale),
        "sdpa_cudnn": sdpa(backends.CUDNN_ATTENTION),
        "sdpa_efficient": sdpa(backends.EFFICIENT_ATTENTION),
    }
    out = {}
    for name, run in paths.items():
        try:
            first = run(0)
            changed = max(int((run(0) != first).sum()) for _ in range(8))
            max_diff = float((first.float() - reference).abs().max())
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for i in range(layers):
                    run(i)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for i in range(layers):
                    run(i)
            graph.replay()
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            replays = max(5, 2000 // layers)
            start.record()
            for _ in range(replays):
                graph.replay()
            end.record()
            end.synchronize()
            us = start.elapsed_time(end) * 1000 / (replays * layers)
            out[name] = {"us": us, "tb_s": per_layer / us / 1e6, "max_diff": max_diff, "changed": changed}
        except Exception as exc:
            out[name] = {
                "us": float("nan"),
                "tb_s": float("nan"),
                "max_diff": float("nan"),
                "changed": f"error: {str(exc).splitlines()[0][:100]}",
            }
    return out
