"""Data-parallel generation deals whole batches: every process plans the batches of all prompts as a
single process would, and runs its share of them on the cache a single process would give each one.
On a GPU that is what makes a sharded eval's outputs equal a single process's (the same rows, shapes
and kernels for every prompt); here the share is run in one process per rank, on the tiny model."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.config import GenerationSettings
from harness.engine.batching import Batch, deal
from harness.engine.generation import generate
from harness.engine.requests import GenerationRequest, RunOptions

PROMPTS = [
    "한국의 수도는 어디인가?",
    "안녕하세요",
    "서울은 한강을 끼고 있는 큰 도시이다. 서울의 인구는",
    "부산의 바다",
    "오늘 날씨는 맑고 바람이",
    "제주도",
    "세종대왕은 한글을 만들었다. 한글은",
    "짧은",
    "경주는 신라의 수도였다. 경주에는 불국사와 석굴암이 있다. 불국사는",
]


@pytest.fixture(scope="module")
def tiny_model(tiny_ref):
    from harness.config.model import Quantization
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    base = load_base(tiny_ref, Quantization(), detect())
    return base.model, base.tokenizer


@dataclass(frozen=True)
class Rank:
    """The part of `distributed.Dist` that `generate` uses, for one rank of a world run in turn."""

    rank: int
    world: int

    def all_gather(self, obj):
        return [obj] * self.world


def test_deal_gives_each_batch_to_one_rank_balancing_cost():
    batches = [
        Batch((0, 1, 2, 3), (4, 96)),
        Batch((4, 5, 6, 7), (4, 96)),
        Batch((8, 9, 10, 11), (4, 64)),
        Batch((12, 13), (2, 64)),
        Batch((14,), (1, 48)),
    ]
    shares = [deal(batches, rank, 2) for rank in range(2)]
    assert sorted((b for share in shares for b in share), key=batches.index) == batches
    # costliest first to the least-loaded rank: 384 → 0, 384 → 1, 256 → 0, 128 → 1, 48 → 1
    assert shares == [[batches[0], batches[2]], [batches[1], batches[3], batches[4]]]
    assert deal(batches, 0, 1) == batches
    assert [deal(batches[:1], rank, 3) for rank in range(3)] == [[batches[0]], [], []]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_run_the_single_process_batches(tiny_model, world):
    model, tokenizer = tiny_model
    settings = GenerationSettings(max_new_tokens=6, do_sample=False)

    def run(shard=None) -> dict[int, object]:
        out: dict[int, object] = {}
        requests = [GenerationRequest(p) for p in PROMPTS]
        generate(model, tokenizer, requests, RunOptions(settings, 2, shard=shard), lambda i, g: out.__setitem__(i, g))
        return out

    single = run()
    dealt = {}
    for rank in range(world):
        mine = run(Rank(rank, world))
        assert not dealt.keys() & mine.keys(), "a prompt ran on two ranks"
        dealt.update(mine)
    assert sorted(dealt) == list(range(len(PROMPTS)))
    for i, one in single.items():
        assert (dealt[i].output, dealt[i].generated_tokens, dealt[i].batch_size) == (
            one.output,
            one.generated_tokens,
            one.batch_size,
        ), PROMPTS[i]
