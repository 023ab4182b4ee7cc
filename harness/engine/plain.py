"""transformers' own `generate`, the path for what the static-cache decoder does not run (beam
search, other attention implementations, encoder-decoders, `engine: plain`) and the reference it is
checked against.

On an encoder-decoder the prompt is the encoder's input, padded on the right (BART's learned
positions would shift under left padding), and the answer is the decoder's output after its start
token: there is no prompt to cut off."""

from __future__ import annotations

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from harness.config.generation import GenerationSettings
from harness.engine.batching import left_pad, right_pad
from harness.engine.model_info import encoder_decoder, end_ids
from harness.engine.requests import Generated
from harness.engine.text import Shown, decode_answer


def generation_kwargs(settings: GenerationSettings, tokenizer, ends: list[int] | None = None) -> dict:
    """`generate`'s arguments for `settings`; `ends`: the tokens that end an answer (`model_info.end_ids`)."""
    kwargs = dict(
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens or None,
        do_sample=settings.do_sample,
        num_beams=settings.num_beams,
        repetition_penalty=settings.repetition_penalty if settings.repetition_penalty != 1.0 else None,
        no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=ends or tokenizer.eos_token_id,
    )
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    else:
        # Greedy: neutral values so a model's own generation_config cannot turn sampling knobs on.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=tokenizer)
    return {k: v for k, v in kwargs.items() if v is not None or k in {"temperature", "top_p", "top_k"}}


def generate_batch(model, tokenizer, batch: list[list[int]], settings: GenerationSettings) -> list[Generated]:
    """One batch through `model.generate`: padded on the left, or on the right into an encoder."""
    ends = end_ids(model, tokenizer)
    input_ids, attention = (right_pad if encoder_decoder(model) else left_pad)(batch, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            **generation_kwargs(settings, tokenizer, ends),
        )
    results = []
    for row, prompt in zip(out[:, _answer_start(model, input_ids.shape[1]) :].tolist(), batch):
        results.append(decode_answer(tokenizer, row, len(prompt), settings, ends))
    return results


def _answer_start(model, width: int) -> int:
    """Where the answer starts in `generate`'s output: after the prompt, or after an encoder-decoder's
    decoder start token."""
    return 1 if encoder_decoder(model) else width


def stream_generate(
    model, tokenizer, encoded: list[int], settings: GenerationSettings, shown: Shown, should_stop
) -> list[int]:
    """One prompt through `model.generate`, its text fed to `shown` as transformers' streamer
    finalizes it; the new tokens."""

    class _Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                shown.feed(text)

    class _Interrupt(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            hit = bool(should_stop and should_stop())
            return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)

    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([encoded], device=device),
            attention_mask=torch.ones((1, len(encoded)), dtype=torch.long, device=device),
            streamer=_Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True),
            stopping_criteria=StoppingCriteriaList([_Interrupt()]),
            **generation_kwargs(settings, tokenizer, end_ids(model, tokenizer)),
        )
    return out[0, _answer_start(model, len(encoded)) :].tolist()
