"""Generators: a tiny interface with one backend per module, chosen by a plain string.

A backend provides a tokenizer (cheap to load: chunking needs it before any generation) and a generator.
Prompts are plain strings built by :mod:`chatqa.prompting`; backends only count, render chat templates,
generate greedily with stop strings (timing prefill and decode separately) and read the probability of a few
words at the next position (Self-Route's yes/no judge).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatqa.config import GeneratorConfig
from chatqa.errors import ConfigError, ContextTooLongError

BACKENDS = {
    "llamacpp": "chatqa.generation.llamacpp",
    "hf": "chatqa.generation.hf",
    "openai": "chatqa.generation.openai",
}


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    prefill_s: float
    decode_s: float
    finish_reason: str = "stop"  # stop | length | eos
    cached_tokens: int = 0  # prompt tokens whose KV state was reused rather than computed


@dataclass
class WordProbabilities:
    """The next-token probability of each word asked for, in order, after one read of a prompt."""

    probabilities: list[float]
    prompt_tokens: int
    prefill_s: float
    cached_tokens: int = 0


def word_variants(word: str) -> list[str]:
    """The spellings a model may start its reply with: as given, lower, capitalised, upper; with and without
    the leading space most vocabularies fold into a word's token ("Yes", " yes")."""
    forms = dict.fromkeys([word, word.lower(), word.capitalize(), word.upper()])
    return [space + form for form in forms for space in ("", " ")]


def word_token_ids(encode: Callable[[str], list[int]], word: str, model: str) -> set[int]:
    """The vocabulary ids of ``word``'s single-token spellings. A word with none cannot be read off one next-token
    distribution, so it is refused rather than approximated by the first piece of a longer spelling."""
    ids = {tokens[0] for v in word_variants(word) if len(tokens := encode(v)) == 1}
    if not ids:
        raise ConfigError(f"'{word}' is not a single token in {model}'s vocabulary: its probability cannot be "
                          "read from the next token")  # fmt: skip
    return ids


class Tokenizer(Protocol):
    id: str  # names the vocabulary, for index manifests

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def count(self, text: str) -> int: ...


class Generator(ABC):
    config: GeneratorConfig
    tokenizer: Tokenizer

    @property
    def context_window(self) -> int:
        return self.config.context_window

    @property
    def name(self) -> str:
        return f"{self.config.backend}:{self.config.model}"

    @abstractmethod
    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
        prefix: str | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
    ) -> Generation:
        """Greedy decoding; ``on_text`` receives text pieces as they are final (streaming).

        ``prefix`` is the start of ``prompt`` shared by every question on the same context (the document):
        a hint that its KV state is worth keeping (llama.cpp stores it on disk); other backends ignore it.
        ``on_prefill(done, total)`` reports reading the prompt as it goes (llama.cpp: once per batch), for a
        progress bar; backends that read a prompt in one step never call it."""

    def word_probabilities(self, prompt: str, words: Sequence[str]) -> WordProbabilities:
        """The probability that the model's next token after ``prompt`` is each of ``words`` (any spelling of
        :func:`word_variants`), from the model's own distribution, without generating. Backends that expose no
        probabilities say so here, in one line."""
        raise ConfigError(f"{self.name} gives no next-token probabilities (Self-Route's judge needs them): use "
                          "routing.self_route_decline: instruction")  # fmt: skip

    def check_fits(self, n_prompt: int, max_new_tokens: int, window: int | None = None) -> None:
        """Refuse before any compute: a prompt that cannot fit with its answer would be cut by the backend."""
        window = self.context_window if window is None else window
        if n_prompt + max_new_tokens > window:
            raise ContextTooLongError(
                f"prompt of {n_prompt:,} tokens plus {max_new_tokens} new tokens exceeds the window ({window:,})"
            )

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        raise ConfigError(f"{self.name} has no chat template; use prompt_format: completion or chatqa")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free native memory early (llama.cpp contexts, GPU tensors)."""


def _backend(config: GeneratorConfig):  # noqa: ANN202 - returns a module
    if config.backend not in BACKENDS:
        raise ConfigError(f"unknown generator backend '{config.backend}' (choose from {', '.join(BACKENDS)})")
    return importlib.import_module(BACKENDS[config.backend])


def load_tokenizer(config: GeneratorConfig) -> Tokenizer:
    return _backend(config).load_tokenizer(config)


def load_generator(
    config: GeneratorConfig, tokenizer: Tokenizer | None = None, state_dir: Path | None = None
) -> Generator:
    """``state_dir``: where a backend may keep state across processes (llama.cpp attaches its own store of
    document prefixes' KV states there, see :mod:`chatqa.kvcache`); backends without such state ignore it."""
    return _backend(config).load_generator(config, tokenizer, state_dir=state_dir)


class CachingGenerator(Generator):
    """A generator that answers a repeated call (same prompt, budget and stop strings; decoding is greedy)
    from memory, as lm-evaluation-harness's ``CachingLM`` wraps an ``LM``: the eval runner passes one to
    :class:`~chatqa.pipeline.ChatQA` so an ``auto`` answer that routes like ``long`` reuses that generation.

    ``entries`` maps :meth:`key` to ``{"gen": Generation, ...}`` (callers attach what they need to it);
    ``calls`` lists this wrapper's calls since the caller last emptied it: the key, and the entry on a hit."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.config = inner.config
        self.tokenizer = inner.tokenizer
        self.entries: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    @staticmethod
    def key(prompt: str, max_new_tokens: int, stop: Sequence[str]) -> str:
        return hashlib.sha256(json.dumps([prompt, max_new_tokens, list(stop)]).encode()).hexdigest()[:24]

    @property
    def context_window(self) -> int:
        return self.inner.context_window

    @property
    def name(self) -> str:
        return self.inner.name

    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
        prefix: str | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
    ) -> Generation:
        key = self.key(prompt, max_new_tokens, stop)
        entry = self.entries.get(key)
        if entry is None:
            extra = {"on_prefill": on_prefill} if on_prefill is not None else {}
            gen = self.inner.generate(prompt, max_new_tokens, stop, on_text, prefix=prefix, **extra)
            entry = self.entries[key] = {"gen": gen}
            self.calls.append((key, None))
        else:
            if on_text and entry["gen"].text:
                on_text(entry["gen"].text)
            self.calls.append((key, entry))
        return entry["gen"]

    def word_probabilities(self, prompt: str, words: Sequence[str]) -> WordProbabilities:
        """Passed through, not cached: only generations are shared between a run's modes."""
        return self.inner.word_probabilities(prompt, words)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.inner.render_chat(messages)

    def close(self) -> None:
        self.inner.close()


class StopScanner:
    """Holds back text that could be the start of a stop string, so streamed text never shows one."""

    def __init__(self, stop: Sequence[str], on_text: Callable[[str], None] | None) -> None:
        self.stop = [s for s in stop if s]
        self.on_text = on_text
        self.sent = 0

    def feed(self, text: str) -> str | None:
        """Give the full text so far; returns the final text if a stop string appeared, else None."""
        for s in self.stop:
            pos = text.find(s)
            if pos >= 0:
                self._emit(text, pos)
                return text[:pos]
        hold = max((len(s) - 1 for s in self.stop), default=0)
        self._emit(text, max(self.sent, len(text) - hold))
        return None

    def finish(self, text: str) -> str:
        self._emit(text, len(text))
        return text

    def _emit(self, text: str, upto: int) -> None:
        if self.on_text and upto > self.sent:
            self.on_text(text[self.sent : upto])
        self.sent = max(self.sent, upto)
