"""A tokenizer that answers from texts encoded beforehand in one batch call.

Building a choice question's rows tokenizes its long few-shot context once per choice, and a
context plus its continuation once more, one call at a time: for thousands of requests that is
most of a fast engine's wall time. A fast tokenizer encodes a list of texts on every core at once.
`Pretokenized` encodes the texts a row will ask for in one such call and answers a later call on
the same text with the same ids (a batch call gives each text the ids a single call gives it);
any other call goes to the tokenizer itself, so the rows are those the tokenizer alone would give.
"""

from __future__ import annotations

import contextlib
import os


class Pretokenized:
    """`tokenizer`, with `texts` (encoded with special tokens) answered from one batch encoding."""

    def __init__(self, tokenizer, texts: list[str]):
        self._tokenizer = tokenizer
        unique = list(dict.fromkeys(texts))
        with _parallel():
            encoded = tokenizer(unique, add_special_tokens=True)["input_ids"] if unique else []
        self._ids = dict(zip(unique, encoded))

    def __call__(self, text, add_special_tokens: bool = True, **kwargs):
        ids = self._known(text, add_special_tokens, kwargs)
        if ids is None:
            return self._tokenizer(text, add_special_tokens=add_special_tokens, **kwargs)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def encode(self, text, add_special_tokens: bool = True, **kwargs) -> list[int]:
        ids = self._known(text, add_special_tokens, kwargs)
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens, **kwargs) if ids is None else ids

    def _known(self, text, add_special_tokens: bool, kwargs: dict) -> list[int] | None:
        """A copy of the batch encoding's ids for a call it answers; None for any other call."""
        if kwargs or not add_special_tokens or not isinstance(text, str) or text not in self._ids:
            return None
        return list(self._ids[text])

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)


@contextlib.contextmanager
def _parallel():
    """The tokenizers library's threads on for this call: the CLI turns them off by default
    (TOKENIZERS_PARALLELISM; the library warns in a process forked after they ran), but a few
    thousand long contexts take seconds on one core."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def choice_texts(requests) -> list[str]:
    """What a log-likelihood row tokenizes: each context without its trailing spaces, and the
    context with its continuation."""
    return [r.context.rstrip() for r in requests] + [r.context + r.continuation for r in requests]
