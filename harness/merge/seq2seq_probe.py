"""Probe outputs of an encoder-decoder: the probe prompt is the source the encoder reads, and the
decoder is compared where it works, over decoder start + greedy tokens.

Greedy decoding is a plain argmax loop, not `generate`: a checkpoint's generation config (beams,
n-gram bans, forced end tokens, as BART summarizers ship) would make it something else. The logits
of every model under comparison are taken over the same decoder inputs, the unmerged reference's
(`teacher`): two models that pick different tokens are still compared on the same positions.
"""

from __future__ import annotations

from harness.engine.model_info import end_ids
from harness.model.families import decoder_start


def probe_outputs(model, tokenizer, prompts: list[str], greedy_tokens: int, teacher: list[dict] | None) -> list[dict]:
    """Per prompt: `greedy` (exactly `greedy_tokens` tokens, end tokens held off), `decoder_inputs`
    (decoder start + the teacher's greedy tokens, else this model's) and the decoder's `logits` over
    them (float32, CPU)."""
    import torch

    device = next(model.parameters()).device
    start = decoder_start(model)
    held_off = end_ids(model, tokenizer)
    outputs = []
    model.eval()
    with torch.no_grad():
        for n, prompt in enumerate(prompts):
            source = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            encoded = model.get_encoder()(input_ids=source)
            decoded = torch.tensor([[start]], device=device)
            for _ in range(greedy_tokens):
                last = model(encoder_outputs=encoded, decoder_input_ids=decoded).logits[0, -1].float()
                last[held_off] = float("-inf")
                decoded = torch.cat([decoded, last.argmax().view(1, 1)], dim=1)
            inputs = decoded[0].tolist() if teacher is None else teacher[n]["decoder_inputs"]
            logits = model(encoder_outputs=encoded, decoder_input_ids=torch.tensor([inputs], device=device)).logits
            outputs.append(
                {"logits": logits[0].float().cpu(), "greedy": decoded[0, 1:].tolist(), "decoder_inputs": inputs}
            )
    return outputs
