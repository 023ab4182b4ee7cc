"""The string side of generation: prompts to token ids, token ids to answers, stop strings, and
text streamed as it is decoded. No tensors here: the decoders hand over token ids."""

from __future__ import annotations

from collections.abc import Callable

from harness.config.generation import GenerationSettings
from harness.engine.model_info import context_length, encoder_decoder
from harness.engine.requests import Generated
from harness.errors import HarnessError


def encode_prompts(
    tokenizer,
    prompts: list[str],
    ids: list[str],
    settings: GenerationSettings,
    limit: int | None,
    chat: bool = False,
    encoder_decoder: bool = False,
):
    """Token ids of `prompts`. `chat`: the prompts were rendered by the tokenizer's chat template, which
    writes the special tokens it wants (BOS included) itself; they are tokenized as
    `apply_chat_template(tokenize=True)` does, without adding them again (two BOS on Llama, Mistral, Gemma).
    `encoder_decoder`: the prompt alone fills the encoder's `limit` and the answer (after the decoder's
    start token) the decoder's; a decoder-only model's prompt and answer share `limit`."""
    # The context check below names the prompt and the fix; transformers' own warning would be a second line.
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    encoded = tokenizer(list(prompts), add_special_tokens=not chat)["input_ids"] if prompts else []
    if limit and encoder_decoder:
        _check_encoder_decoder(encoded, ids, settings, limit)
    elif limit:
        for sample_id, tokens in zip(ids, encoded):
            if len(tokens) + settings.max_new_tokens > limit:
                raise HarnessError(
                    f"prompt '{sample_id}' has {len(tokens)} tokens; with max_new_tokens={settings.max_new_tokens} "
                    f"it exceeds the model's context of {limit}; shorten the prompt or lower max_new_tokens"
                )
    return encoded


def encode_for(model, tokenizer, prompts: list[str], ids: list[str], settings: GenerationSettings, chat: bool = False):
    """`encode_prompts` checked against `model`'s context (its encoder's and decoder's, on an encoder-decoder)."""
    return encode_prompts(tokenizer, prompts, ids, settings, context_length(model), chat, encoder_decoder(model))


def _check_encoder_decoder(encoded: list[list[int]], ids: list[str], settings: GenerationSettings, limit: int) -> None:
    if settings.max_new_tokens + 1 > limit:
        raise HarnessError(
            f"max_new_tokens={settings.max_new_tokens} exceeds the decoder's context of {limit} tokens "
            f"(its start token included); lower max_new_tokens to {limit - 1} or less"
        )
    for sample_id, tokens in zip(ids, encoded):
        if len(tokens) > limit:
            raise HarnessError(
                f"prompt '{sample_id}' has {len(tokens)} tokens, more than the encoder's context of {limit}; "
                "shorten the prompt"
            )


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    positions = [text.find(s) for s in stops if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True


def holds_stop(tokenizer, tokens: list[int], stops: list[str]) -> bool:
    """Whether the text of `tokens` already holds a stop string."""
    return cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stops)[1]


def decode_answer(
    tokenizer, new_tokens: list[int], prompt_tokens: int, settings: GenerationSettings, ends: list[int] | None = None
) -> Generated:
    """An answer from its new tokens: cut at the first end token (`ends`, see `model_info.end_ids`)
    or stop string, with why it ended."""
    eos = ends or tokenizer.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    stop_reason = "length"
    kept = []
    for token in new_tokens:
        if token in eos_ids:
            stop_reason = "eos"
            break
        kept.append(token)
    # A batch is padded after a sequence finishes; the pad id may equal eos (handled above).
    while kept and kept[-1] == tokenizer.pad_token_id and tokenizer.pad_token_id not in eos_ids:
        kept.pop()
        stop_reason = "eos"
    text = tokenizer.decode(kept, skip_special_tokens=True)
    cut, found = cut_at_stop(text, settings.stop)
    if found:
        stop_reason = "stop"
        # Generation ends at the token that completes the stop string; a decoder that tests for
        # stops only every few steps may have gone further, which must not count.
        while kept and cut_at_stop(tokenizer.decode(kept[:-1], skip_special_tokens=True), settings.stop)[1]:
            kept.pop()
    return Generated(
        output=cut, prompt_tokens=prompt_tokens, generated_tokens=len(kept), stop_reason=stop_reason, tokens=tuple(kept)
    )


def held_back(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that begins some stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class Shown:
    """The text passed on so far: pieces that are known not to begin a stop string."""

    def __init__(self, stops: list[str], on_text: Callable[[str], None]):
        self.stops, self.on_text = stops, on_text
        self.received: list[str] = []
        self.shown: list[str] = []

    def feed(self, text: str) -> bool:
        """Take new text; True once a stop string has appeared."""
        self.received.append(text)
        cut, found = cut_at_stop("".join(self.received), self.stops)
        safe = cut if found else cut[: len(cut) - held_back(cut, self.stops)]
        done = "".join(self.shown)
        if len(safe) > len(done) and safe.startswith(done):
            self.shown.append(safe[len(done) :])
            self.on_text(self.shown[-1])
        return found

    def finish(self, output: str) -> None:
        done = "".join(self.shown)
        if output.startswith(done) and len(output) > len(done):
            self.on_text(output[len(done) :])


class Detokenizer:
    """A streamed answer's text from its tokens so far, fed to `shown` as it grows."""

    def __init__(self, tokenizer, shown: Shown):
        self.tokenizer, self.shown = tokenizer, shown
        self.text = ""

    def feed(self, tokens: list[int]) -> bool:
        """Take the answer's tokens so far; True once a stop string has appeared."""
        decoded = self.tokenizer.decode(tokens, skip_special_tokens=True)  # the pieces join to `decode_answer`'s
        # Byte-level BPE splits a Hangul syllable over tokens: wait until the character is whole.
        if not decoded.endswith("\ufffd") and len(decoded) > len(self.text):
            hit = self.shown.feed(decoded[len(self.text) :])
            self.text = decoded
            return hit
        return False
