"""Any OpenAI-compatible server (vLLM, llama.cpp server, llama-cpp-python) through the standard library.

Prompts are formatted here, on the client, and sent to ``/v1/completions`` as plain strings, so the same
prompt reaches a local backend and a server byte for byte. Without streaming there is one answer and no way to
split prefill from decode: ``prefill_s`` is the whole request and ``decode_s`` is 0. With ``on_text`` the answer
streams over SSE and ``prefill_s`` is the time to the first token. ``repeat_penalty: 1.0`` is sent because
llama-cpp-python's server defaults to 1.1, which would break greedy parity; servers that do not know it ignore it.

Prefix caching is the server's (vLLM's automatic prefix caching, SGLang's radix cache): every prompt built by
:mod:`chatqa.prompting` starts with the document, so questions on one document share a long prefix, and
``cached_tokens`` is what the server says it reused (``usage.prompt_tokens_details.cached_tokens``; vLLM
reports it with ``--enable-prompt-tokens-details``, SGLang with ``--enable-cache-report``), never assumed.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from chatqa.config import GeneratorConfig
from chatqa.errors import ConfigError, ModelLoadError
from chatqa.generation import Generation, Generator, StopScanner, Tokenizer, WordProbabilities, word_variants

TOP_LOGPROBS = 20  # the most vLLM returns by default (--max-logprobs); the judge's words are among them or negligible


class HTTPStatusError(ModelLoadError):
    def __init__(self, url: str, code: int, message: str) -> None:
        super().__init__(f"{url} answered HTTP {code}: {message}")
        self.code = code


class Client:
    """JSON over HTTP with one-line errors: the CLI prints these, so no tracebacks from urllib."""

    def __init__(self, config: GeneratorConfig) -> None:
        if not config.base_url:
            raise ConfigError("the openai backend needs generator.base_url (e.g. http://127.0.0.1:8000/v1)")
        base = config.base_url.rstrip("/")
        self.root = base.removesuffix("/v1")
        self.timeout = config.timeout
        self.key = os.environ.get(config.api_key_env) if config.api_key_env else None

    def open(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.root + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        try:
            return urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(text)
                detail = detail.get("error", detail.get("detail", detail)) if isinstance(detail, dict) else detail
                detail = detail.get("message", detail) if isinstance(detail, dict) else detail
            except ValueError:
                detail = text
            raise HTTPStatusError(url, exc.code, " ".join(str(detail).split())[:300]) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelLoadError(f"cannot reach {url}: {reason}") from None

    def json(self, path: str, body: dict[str, Any] | None = None) -> Any:
        with self.open(path, body) as resp:
            return json.loads(resp.read())


def _events(resp: Any) -> Iterator[dict[str, Any]]:
    """Server-sent events: ``data: {json}`` lines until ``data: [DONE]``."""
    for raw in resp:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


# (tokenize path, request body, detokenize path, request body, key of the text in the detokenize answer)
DIALECTS = [
    ("/tokenize", lambda m, t: {"model": m, "prompt": t, "add_special_tokens": False},  # vLLM
     "/detokenize", lambda m, ids: {"model": m, "tokens": ids}, "prompt"),
    ("/tokenize", lambda m, t: {"content": t, "add_special": False, "parse_special": True},  # llama.cpp server
     "/detokenize", lambda m, ids: {"tokens": ids}, "content"),
    ("/extras/tokenize", lambda m, t: {"model": m, "input": t},  # llama-cpp-python server
     "/extras/detokenize", lambda m, ids: {"model": m, "tokens": ids}, "text"),
]  # fmt: skip


class ServerTokenizer:
    """The server's own vocabulary via its tokenize endpoint (whichever dialect answers), for exact counts.

    Tokens the server adds on its own (a BOS) are learnt from tokenizing "" and removed. Special-token text in
    a document is parsed as special tokens here, unlike the local tokenizers' ``count``.
    """

    def __init__(self, client: Client, model: str) -> None:
        self.client, self.model = client, model
        self.id = f"openai:{model}"
        for prefix in ("", "/v1"):
            for tok_path, tok_body, detok_path, detok_body, key in DIALECTS:
                try:
                    probe = client.json(prefix + tok_path, tok_body(model, "Hello world"))
                except (HTTPStatusError, ValueError):  # not this dialect (404, 422, an HTML page)
                    continue
                if isinstance(probe, dict) and isinstance(probe.get("tokens"), list) and probe["tokens"]:
                    self._tok = (prefix + tok_path, tok_body)
                    self._detok = (prefix + detok_path, detok_body, key)
                    self._added = self._tokens("")
                    return
        raise ModelLoadError(f"{client.root} offers no tokenize endpoint; set generator.tokenizer to a local one")

    def _tokens(self, text: str) -> list[int]:
        path, body = self._tok
        tokens = self.client.json(path, body(self.model, text))["tokens"]
        return [t if isinstance(t, int) else t["id"] for t in tokens]  # llama.cpp may return {id, piece}

    def encode(self, text: str) -> list[int]:
        ids = self._tokens(text)
        n = len(self._added)
        return ids[n:] if n and ids[:n] == self._added else ids

    def decode(self, ids: Sequence[int]) -> str:
        path, body, key = self._detok
        return self.client.json(path, body(self.model, list(ids)))[key]

    def count(self, text: str) -> int:
        return len(self.encode(text))


def local_tokenizer(config: GeneratorConfig) -> Tokenizer:
    """``generator.tokenizer``: a GGUF (llama.cpp vocabulary) or an HF tokenizer folder / cached hub id."""
    name = config.tokenizer or ""
    if name.endswith(".gguf") or name.startswith("embedded:"):
        from chatqa.generation.llamacpp import LlamaTokenizer

        return LlamaTokenizer(dataclasses.replace(config, backend="llamacpp", model=name))
    from chatqa.generation.hf import HFTokenizer

    return HFTokenizer(dataclasses.replace(config, backend="hf", model=name, gguf_file=None))


class OpenAIGenerator(Generator):
    def __init__(self, config: GeneratorConfig, tokenizer: Tokenizer | None = None) -> None:
        self.config = config
        self.client = Client(config)
        try:
            served = [m.get("id") for m in self.client.json("/v1/models").get("data", [])]
        except HTTPStatusError as exc:  # reachable, just no model list; a wrong API key (401) still stops here
            if exc.code != 404:
                raise
            served = []
        # a server with one model answers to that model whatever the profile calls it
        self.model = served[0] if len(served) == 1 and config.model not in served else config.model
        if tokenizer is None:
            tokenizer = local_tokenizer(config) if config.tokenizer else ServerTokenizer(self.client, self.model)
        self.tokenizer = tokenizer

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """Only with a local tokenizer: the server's template is not reachable through /v1/completions."""
        tok: Any = self.tokenizer
        if getattr(getattr(tok, "tok", None), "chat_template", None):  # HFTokenizer
            return tok.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        rendered = tok.render_chat(messages) if hasattr(tok, "llm") else None  # LlamaTokenizer: the GGUF's
        if rendered is not None:
            return rendered
        return super().render_chat(messages)

    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
        prefix: str | None = None,  # the KV-cache hint; only llama.cpp stores prefix states
        on_prefill: Callable[[int, int], None] | None = None,  # llama.cpp only: the prompt is read in one step
    ) -> Generation:
        n_prompt = len(self.tokenizer.encode(prompt))
        self.check_fits(n_prompt, max_new_tokens)
        stream = on_text is not None
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "max_tokens": max_new_tokens,
                                "temperature": 0, "repeat_penalty": 1.0, "stream": stream}  # fmt: skip
        if stop:
            body["stop"] = list(stop)
        if stream:  # the usage, cached tokens included, comes in a last chunk only when asked for
            body["stream_options"] = {"include_usage": True}
        scanner = StopScanner(stop, on_text)
        text, reason, stop_reason, usage, pieces, final = "", None, "absent", {}, 0, None
        start = time.perf_counter()
        first = None
        try:
            with self.client.open("/v1/completions", body) as resp:
                for event in _events(resp) if stream else [json.loads(resp.read())]:
                    usage = event.get("usage") or usage
                    for choice in event.get("choices", [])[:1]:
                        text += choice.get("text") or ""
                        pieces += bool(choice.get("text"))
                        first = first or (time.perf_counter() if text else None)
                        reason = choice.get("finish_reason") or reason
                        stop_reason = choice.get("stop_reason", stop_reason)
                    final = scanner.feed(text)  # servers cut at stop strings too; this also holds back partial ones
                    if final is not None:
                        break
        except (OSError, http.client.HTTPException) as exc:  # a timeout or a dropped connection mid-answer
            raise ModelLoadError(f"{self.client.root}/v1/completions stopped answering: {exc}") from None
        end = time.perf_counter()
        if final is not None:
            text, reason = final, "stop"
        else:
            text = scanner.finish(text)
            if reason != "length":  # vLLM tells a stop string (str) from EOS (None); others only say "stop"
                absent = stop_reason == "absent"
                reason = "stop" if (isinstance(stop_reason, str) and not absent) or (absent and stop) else "eos"
        first = first if stream and first else end
        prompt_tokens = int(usage.get("prompt_tokens") or n_prompt)
        completion = int(usage.get("completion_tokens") or pieces)
        cached = server_cached_tokens(usage)
        return Generation(text.strip(), prompt_tokens, completion, first - start, end - first, reason, cached)

    def word_probabilities(self, prompt: str, words: Sequence[str]) -> WordProbabilities:
        """From the server's top :data:`TOP_LOGPROBS` log-probabilities of one generated token: a spelling outside
        them counts 0 (it had less probability than the 20th token). A server that returns none (llama-cpp-python's
        started with ``--logits_all false``) is a one-line error."""
        n_prompt = len(self.tokenizer.encode(prompt))
        self.check_fits(n_prompt, 1)
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": TOP_LOGPROBS,
                "repeat_penalty": 1.0, "stream": False}  # fmt: skip
        hint = (
            "Self-Route's judge needs next-token log-probabilities (a llama-cpp-python server gives them unless "
            "started with --logits_all false)"
        )
        start = time.perf_counter()
        try:
            answer = self.client.json("/v1/completions", body)
        except HTTPStatusError as exc:
            raise ModelLoadError(f"{exc}; {hint}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ModelLoadError(f"{self.client.root}/v1/completions stopped answering: {exc}") from None
        seconds = time.perf_counter() - start
        top = top_logprobs(answer)
        if not top:
            raise ModelLoadError(f"{self.client.root}/v1/completions returned no log-probabilities; {hint}")
        spellings = [set(word_variants(w)) for w in words]
        out = [sum(math.exp(lp) for tok, lp in top.items() if tok in forms) for forms in spellings]
        usage = answer.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or n_prompt)
        return WordProbabilities(out, prompt_tokens, seconds, server_cached_tokens(usage))


def top_logprobs(answer: Any) -> dict[str, float]:
    """The first position's top log-probabilities of a ``/v1/completions`` answer ({token text: logprob})."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    logprobs = (choices[0].get("logprobs") or {}) if choices and isinstance(choices[0], dict) else {}
    top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    first = top[0] if isinstance(top, list) and top else None
    return {str(k): float(v) for k, v in first.items()} if isinstance(first, dict) else {}


def server_cached_tokens(usage: dict[str, Any]) -> int:
    """Prompt tokens the server served from its prefix cache, as it reports them; 0 when it does not say."""
    details = usage.get("prompt_tokens_details") or {}
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    return int(value) if isinstance(value, (int, float)) and value > 0 else 0


def load_tokenizer(config: GeneratorConfig) -> Tokenizer:
    if config.tokenizer:
        return local_tokenizer(config)
    return OpenAIGenerator(config).tokenizer


def load_generator(
    config: GeneratorConfig, tokenizer: Tokenizer | None = None, state_dir: object = None
) -> OpenAIGenerator:
    return OpenAIGenerator(config, tokenizer)
