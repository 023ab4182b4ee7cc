"""What the engine is asked and what it answers: the three kinds every evaluation reduces to.

Generation (a prompt → text), the log-likelihood of a continuation given a context (multiple
choice), and the rolling log-likelihood of a whole text (perplexity). Plain data, no torch: tasks
build requests and score results without the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.generation import GenerationSettings


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    id: str = ""  # names the prompt in errors (a prompt too long for the context)


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """How likely `continuation` is after `context`: tokenized together, as lm-evaluation-harness
    does, so a token that straddles their boundary belongs to the continuation."""

    context: str
    continuation: str


@dataclass(frozen=True)
class RollingLoglikelihoodRequest:
    """A whole text scored with a sliding window: windows of `context_length` tokens, `stride`
    apart, each scoring only the tokens no earlier window scored. `source`: what the text is
    conditioned on (an encoder-decoder's encoder input; before the text, unscored, on a decoder-only
    model)."""

    text: str
    context_length: int
    stride: int
    source: str | None = None


@dataclass(frozen=True)
class Generated:
    output: str  # decoded new text, cut at the first stop string
    prompt_tokens: int
    generated_tokens: int
    stop_reason: str  # stop | eos | length | interrupted
    time_s: float = 0.0  # wall time of the batch (or the single streamed answer) that produced it
    batch_size: int = 1
    tokens: tuple[int, ...] = ()  # the new tokens the output was decoded from (end tokens and padding dropped)


@dataclass(frozen=True)
class Loglikelihood:
    logprob: float  # summed over the continuation's tokens, in nats
    is_greedy: bool  # whether every continuation token is the model's most likely one
    tokens: int  # the continuation's tokens


@dataclass(frozen=True)
class RollingLoglikelihood:
    nll: float  # summed over the scored tokens, in nats
    tokens: int  # tokens scored
    bytes: int  # UTF-8 bytes of the text those tokens cover


Request = GenerationRequest | LoglikelihoodRequest | RollingLoglikelihoodRequest
Result = Generated | Loglikelihood | RollingLoglikelihood


@dataclass(frozen=True)
class RunOptions:
    """How a list of requests runs. `batch_size` None: sized by the engine (from free GPU memory on
    the fast engine, ~16k tokens per forward when scoring). `engine` "plain" runs transformers'
    own path; `shard` (a `distributed.Dist` of several processes) deals whole generation batches
    to the processes; `chat`: the prompts were rendered by the chat template; `progress` (a tqdm
    bar or None) advances as requests finish."""

    settings: GenerationSettings | None = None  # generation only
    batch_size: int | None = 1
    engine: str = "auto"
    shard: Any = None
    chat: bool = False
    progress: Any = None
