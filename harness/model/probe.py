"""A model's logits on a probe prompt: what compares two models (merge verification) and checks a
reload against the model that was saved (training's record)."""

from __future__ import annotations


def prompt_logits(model, ids, decoder_ids=None):
    """`model`'s logits at every position of one row of token ids (a 1 × n tensor), in float32 on the
    CPU: computed in eval mode without autograd, and a model that was training is put back to it. On an
    encoder-decoder `ids` are the encoder's and the logits those over `decoder_ids` (1 × m)."""
    import torch

    device = next(model.parameters()).device
    decoder = {} if decoder_ids is None else {"decoder_input_ids": decoder_ids.to(device)}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), **decoder).logits[0].float().cpu()
    if was_training:
        model.train()
    return logits
