"""A one-row decoder (a streamed answer) prefills its prompt in replays of one captured chunk
(decoding.PREFILL_CHUNK tokens), not in one eager pass: the chunks compute what the one pass
computes, whatever the prompt's length against the chunk and the cache.

On a GPU the chunk is a real CUDA graph. On a CPU, where there are no graphs, the chunk's body is
replayed eagerly: the same code the graph captures, on the real 4-bit model and adapter."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

CUDA = torch.cuda.is_available()
PROMPT = "문맥: 서울은 대한민국의 수도이며 가장 큰 도시이다. 한강이 도시를 가로지른다.\n질문: 대한민국의 수도는 어디인가?\n답:"


@pytest.fixture(scope="module")
def models(gen_adapter, tiny_ref):
    from harness.config.model import Quantization
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    quantization = Quantization(compute_dtype="bf16") if CUDA else Quantization()
    return attach_adapters(load_base(tiny_ref, quantization, detect()), {"a": str(gen_adapter)})


def _decoder(model, tokenizer, settings, need, monkeypatch):
    from harness.engine.decoding import StaticDecoder

    if not CUDA:
        monkeypatch.setattr(StaticDecoder, "_capture", lambda self, body: (body(), SimpleNamespace(replay=body))[1])
    decoder = StaticDecoder(model, tokenizer, settings, 1, need)
    decoder.use_graph = True
    return decoder


def _close(actual, expected):
    """Equal up to a change of matmul shape: float32 on a CPU, bf16 with fused kernels on a GPU."""
    tolerance = 0.02 * float(expected.abs().max()) if CUDA else 1e-4
    return float((actual.float() - expected.float()).abs().max()) <= tolerance


# 8: the prompt spans several chunks; 96: one chunk longer than the whole cache (its tail is clamped).
@pytest.mark.parametrize("chunk", [8, 96])
@pytest.mark.parametrize("name", ["base", "a"])
def test_chunks_compute_the_one_pass_prefill(models, chunk, name, monkeypatch):
    from harness.config.generation import GenerationSettings
    from harness.engine import decoding

    monkeypatch.setattr(decoding, "PREFILL_CHUNK", chunk)
    tokenizer = models.base.tokenizer
    ids = tokenizer(PROMPT)["input_ids"]
    n = len(ids)
    settings = GenerationSettings(max_new_tokens=4)
    with models.use(name) as model, torch.inference_mode():
        decoder = _decoder(model, tokenizer, settings, n + 4, monkeypatch)
        assert chunk < n or chunk > decoder.max_len
        logits, last = decoder._prefill_chunks(ids)
        slot = int(decoder.slot)
        cached = [(layer.keys[0, :, :n].clone(), layer.values[0, :, :n].clone()) for layer in decoder.cache.layers]
        with decoder.kernels():
            one_pass, one_pass_last = decoder._prefill([ids], [0])
    assert int(last) == int(one_pass_last) == n - 1 and slot == int(decoder.slot) == n
    assert logits.argmax(-1).tolist() == one_pass.argmax(-1).tolist()
    assert _close(logits, one_pass)
    for (keys, values), layer in zip(cached, decoder.cache.layers):
        assert _close(keys, layer.keys[0, :, :n]) and _close(values, layer.values[0, :, :n])


def test_a_streamed_answer_is_the_one_pass_answer_and_the_chunk_is_captured_once(models, monkeypatch):
    from harness.config.generation import GenerationSettings
    from harness.engine import decoding
    from harness.engine.decoding import StaticDecoder

    monkeypatch.setattr(decoding, "PREFILL_CHUNK", 16)
    tokenizer = models.base.tokenizer
    settings = GenerationSettings(max_new_tokens=12, min_new_tokens=12)
    prompts = [tokenizer(PROMPT)["input_ids"], tokenizer(PROMPT[:30])["input_ids"]]
    with models.use("a") as model:
        chunked = _decoder(model, tokenizer, settings, 64, monkeypatch)
        one_pass = StaticDecoder(model, tokenizer, settings, 1, 64)
        one_pass.use_graph = False
        answers = []
        for ids in prompts:
            answers.append(list(chunked.run([ids], on_host=True)))
            if ids is prompts[0]:
                captured = chunked.chunk
            assert answers[-1] == [[t] for t in torch.stack(list(one_pass.run([ids])), dim=1)[0].tolist()]
    assert chunked.chunk is captured
    assert answers[0] != answers[1]


def test_a_failed_capture_prefills_in_one_pass(models, monkeypatch):
    from harness.config.generation import GenerationSettings
    from harness.engine.decoding import StaticDecoder

    def fail(self, body):  # what `_capture` does when capture raises: no graphs from now on
        self.use_graph = False

    monkeypatch.setattr(StaticDecoder, "_capture", fail)
    tokenizer = models.base.tokenizer
    ids = tokenizer(PROMPT)["input_ids"]
    with models.use("a") as model, torch.inference_mode():
        decoder = StaticDecoder(model, tokenizer, GenerationSettings(max_new_tokens=4), 1, len(ids) + 4)
        decoder.use_graph = True
        logits, last = decoder._prefill_chunks(ids)
        assert decoder.chunk is None and not decoder.use_graph
        with decoder.kernels():
            one_pass, one_pass_last = decoder._prefill([ids], [0])
    assert int(last) == int(one_pass_last) == len(ids) - 1
    assert torch.equal(logits, one_pass)
