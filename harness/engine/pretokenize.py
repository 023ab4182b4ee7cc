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
from array import array


class Pretokenized:
    """`tokenizer`, with `texts` (encoded with special tokens) answered from one batch encoding."""

    def __init__(self, tokenizer, texts: list[str]):
        self._tokenizer = tokenizer
        self._ids = _encoded(tokenizer)
        unique = [text for text in dict.fromkeys(texts) if text not in self._ids]
        # Kept as 32-bit arrays, not lists of Python int objects: an eval's columns keep every
        # text's ids until its last column is done, for a long eval gigabytes as lists.
        self._ids.update(zip(unique, (array("i", ids) for ids in _encode(tokenizer, unique))))

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
        return self._ids[text].tolist()

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text's ids with special tokens, from one batch call on every core."""
    if not texts:
        return []
    with _parallel():
        # The ids alone: the masks a call also returns by default cost about as much again to build.
        return tokenizer(texts, add_special_tokens=True, return_attention_mask=False, return_token_type_ids=False)[
            "input_ids"
        ]


# While `shared_encodings` is open: per tokenizer (by id, with the tokenizer kept so the id stays
# its own), the texts encoded so far.
_shared: dict[int, tuple[object, dict[str, array]]] | None = None


@contextlib.contextmanager
def shared_encodings():
    """While open, every `Pretokenized` of one tokenizer encodes only texts none before it encoded:
    an eval's columns (the base, each adapter) ask for the same texts."""
    global _shared
    _shared = {}
    try:
        yield
    finally:
        _shared = None


def _encoded(tokenizer) -> dict[str, array]:
    """The texts `tokenizer` encoded so far while `shared_encodings` is open (a new dict otherwise)."""
    if _shared is None:
        return {}
    return _shared.setdefault(id(tokenizer), (tokenizer, {}))[1]


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
