"""GGUF models through llama.cpp: the CPU path.

Greedy decoding is written out (not ``create_completion``) so prefill and decode are timed apart and the
prompt is tokenized exactly once. llama-cpp-python keeps the last prompt's KV state and reuses its longest
common prefix, so a second question on the same document only pays for the new tokens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from chatqa.config import GeneratorConfig
from chatqa.embedded import resolve
from chatqa.errors import ContextTooLongError, ModelLoadError
from chatqa.generation import Generation, Generator, StopScanner

ROPE_TYPES = {"none": 0, "linear": 1, "yarn": 2}


def _llama(config: GeneratorConfig, **kwargs: object):  # noqa: ANN202 - llama_cpp.Llama
    import llama_cpp

    path = resolve(config.model)
    if not os.path.isfile(path):
        raise ModelLoadError(f"GGUF file not found: {path}")
    try:
        return llama_cpp.Llama(model_path=path, verbose=False, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from None


class LlamaTokenizer:
    """The GGUF vocabulary alone (vocab_only): loads in well under a second, enough for chunking."""

    def __init__(self, config: GeneratorConfig, llm: object | None = None) -> None:
        self.llm = llm or _llama(config, vocab_only=True)
        self.id = f"gguf:{os.path.basename(resolve(config.model))}"
        self._bos_text = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "ignore")

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        if add_bos and self._bos_text and text.startswith(self._bos_text):
            add_bos = False  # chat templates already write the BOS text
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def decode(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", "replace")

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def rope_kwargs(rope: dict | None) -> dict[str, object]:
    """Map a profile's RoPE scaling (linear PI, YaRN) onto llama.cpp's context parameters."""
    if not rope:
        return {}
    kind = rope.get("type", "linear")
    factor = float(rope.get("factor", 1.0))
    if kind == "dynamic":
        raise ModelLoadError("llama.cpp has no dynamic NTK scaling; use linear or yarn, or the hf backend")
    if kind not in ROPE_TYPES:
        raise ModelLoadError(f"unknown rope type '{kind}' (linear, yarn, dynamic)")
    out: dict[str, object] = {"rope_scaling_type": ROPE_TYPES[kind], "rope_freq_scale": 1.0 / factor}
    if kind == "yarn":
        out["yarn_orig_ctx"] = int(rope.get("original_context", 0))
    return out


class LlamaCppGenerator(Generator):
    def __init__(self, config: GeneratorConfig, tokenizer: LlamaTokenizer | None = None) -> None:
        self.config = config
        threads = config.threads or os.cpu_count() or 1
        self.llm = _llama(
            config,
            n_ctx=config.context_window,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            flash_attn=True,
            **rope_kwargs(config.rope),
        )
        self.tokenizer = LlamaTokenizer(config, self.llm)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return super().render_chat(messages)
        tok = self.tokenizer

        def text(token: int) -> str:
            return tok.llm.detokenize([token], special=True).decode("utf-8", "ignore")

        formatter = Jinja2ChatFormatter(
            template, eos_token=text(self.llm.token_eos()), bos_token=text(self.llm.token_bos())
        )
        return formatter(messages=messages).prompt

    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        ids = self.tokenizer.encode(prompt, add_bos=True)
        if len(ids) + max_new_tokens > self.llm.n_ctx():
            raise ContextTooLongError(
                f"prompt of {len(ids):,} tokens plus {max_new_tokens} new tokens exceeds "
                f"the window ({self.llm.n_ctx():,})"
            )
        cached = self._common_prefix(ids)
        scanner = StopScanner(stop, on_text)
        out: list[int] = []
        text, finish = "", "length"
        start = time.perf_counter()
        first = start
        eog = self.llm._model.token_is_eog if hasattr(self.llm._model, "token_is_eog") else None
        for token in self.llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if not out and first == start:
                first = time.perf_counter()
            if (eog and eog(token)) or token == self.llm.token_eos():
                finish = "eos"
                break
            out.append(token)
            text = self.tokenizer.decode(out)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            final = scanner.feed(text)
            if final is not None:
                text, finish = final, "stop"
                break
            if len(out) >= max_new_tokens:
                break
        if finish != "stop":
            text = scanner.finish(text)
        end = time.perf_counter()
        return Generation(text.strip(), len(ids), len(out), first - start, end - first, finish, cached)

    def _common_prefix(self, ids: list[int]) -> int:
        """How many prompt tokens llama.cpp will reuse from the state it holds (for the usage report)."""
        held = self.llm._input_ids
        n = 0
        for a, b in zip(held[: len(ids) - 1], ids, strict=False):
            if a != b:
                break
            n += 1
        return n

    def close(self) -> None:
        self.llm.close()


def load_tokenizer(config: GeneratorConfig) -> LlamaTokenizer:
    return LlamaTokenizer(config)


def load_generator(config: GeneratorConfig, tokenizer: object | None = None) -> LlamaCppGenerator:
    return LlamaCppGenerator(config)
