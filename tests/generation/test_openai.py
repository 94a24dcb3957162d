"""The OpenAI-compatible backend against a real llama-cpp-python server on loopback, serving the embedded SmolLM2.

The server is started once for the module with an API key (so authentication is exercised) and torn down in
the fixture's finalizer. No local tokenizer is configured unless a test says so: counts go through the
server's tokenize endpoint.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatqa.config import GeneratorConfig
from chatqa.errors import ConfigError, ContextTooLongError, ModelLoadError
from chatqa.generation import load_generator, load_tokenizer
from chatqa.generation.openai import OpenAIGenerator, ServerTokenizer
from chatqa.weights import resolve

try:
    import llama_cpp.server.app  # noqa: F401
except ImportError:  # the server extra: skipped on a developer box, a failure under CI=true
    from tests.conftest import missing

    missing("needs `pip install 'llama-cpp-python[server]'`")

KEY_ENV, KEY = "CHATQA_TEST_SERVER_KEY", "test-key-123"
CHAT = "<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n<|im_start|>assistant\n"
COLOURS = "The colours of the rainbow are red, orange,"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[str]:
    """A llama-cpp-python server on a free loopback port; yields its base URL (…/v1)."""
    port, log = free_port(), tmp_path_factory.mktemp("server") / "server.log"
    model = resolve("embedded:smollm2")
    # one thread: llama.cpp's threads spin at barriers, so two of them on a shared 2-core box crawl
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--n_ctx", "4096", "--verbose", "False",
           "--host", "127.0.0.1", "--port", str(port), "--api_key", KEY,
           "--n_threads", "1", "--n_threads_batch", "1", *extra]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    os.environ[KEY_ENV] = KEY
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", proc, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.environ.pop(KEY_ENV, None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, limit: float = 60.0) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                if json.loads(resp.read()).get("data"):
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"server not ready after {limit:.0f} s:\n{log.read_text()[-2000:]}")


def config(base_url: str, **kwargs: object) -> GeneratorConfig:
    settings: dict = {"model": "smollm2", "base_url": base_url, "api_key_env": KEY_ENV, "context_window": 4096}
    return GeneratorConfig(backend="openai", **{"timeout": 120, **settings, **kwargs})


@pytest.fixture(scope="module")
def gen(server: str) -> OpenAIGenerator:
    return load_generator(config(server))


def test_generate_without_streaming(gen: OpenAIGenerator) -> None:
    out = gen.generate(CHAT, 24)
    assert "Paris" in out.text and out.finish_reason == "eos"
    assert out.prompt_tokens == len(gen.tokenizer.encode(CHAT))  # the server's usage agrees with /tokenize
    assert 0 < out.completion_tokens < 24
    assert out.prefill_s > 0 and out.decode_s == 0  # one answer: no split is measurable


def test_generate_streaming(gen: OpenAIGenerator) -> None:
    pieces: list[str] = []
    out = gen.generate(CHAT, 24, on_text=pieces.append)
    assert out.text == gen.generate(CHAT, 24).text
    assert "".join(pieces).strip() == out.text and len(pieces) > 1
    assert out.prefill_s > 0 and out.decode_s > 0 and out.completion_tokens > 1


def test_max_tokens(gen: OpenAIGenerator) -> None:
    out = gen.generate(COLOURS, 5)
    assert out.finish_reason == "length" and out.completion_tokens == 5


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
def test_stop_strings(gen: OpenAIGenerator, stream: bool) -> None:
    full = gen.generate(COLOURS, 16)
    stop = " " + full.text.split()[2]
    pieces: list[str] = []
    out = gen.generate(COLOURS, 16, stop=[stop], on_text=pieces.append if stream else None)
    assert out.finish_reason == "stop"
    assert out.text == full.text[: full.text.index(stop)].strip()
    if stream:
        assert stop.strip() not in "".join(pieces)


def test_token_counting_through_the_server(server: str, gen: OpenAIGenerator) -> None:
    from chatqa.generation.llamacpp import LlamaTokenizer

    tok = load_tokenizer(config(server))
    assert isinstance(tok, ServerTokenizer) and tok.id.startswith("openai:")
    local = LlamaTokenizer(GeneratorConfig(model="embedded:smollm2"))
    for text in ["Hello world", "naïve café 日本語 🙂", "  two  spaces\n"]:
        assert tok.encode(text) == local.encode(text)
        assert tok.count(text) == local.count(text)
        assert tok.decode(tok.encode(text)) == text


def test_same_greedy_answer_as_llamacpp(gen: OpenAIGenerator) -> None:
    local = load_generator(GeneratorConfig(model="embedded:smollm2", context_window=2048, threads=1))
    try:
        for prompt in (CHAT, COLOURS):
            assert gen.generate(prompt, 16).text == local.generate(prompt, 16).text
    finally:
        local.close()


def test_render_chat_needs_a_local_tokenizer(server: str, gen: OpenAIGenerator) -> None:
    with pytest.raises(ConfigError, match="no chat template"):
        gen.render_chat([{"role": "user", "content": "hi"}])
    with_tok = load_generator(config(server, tokenizer="embedded:smollm2"))
    prompt = with_tok.render_chat([{"role": "user", "content": "hi"}])
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert "Paris" in with_tok.generate(CHAT, 16).text


def test_too_long_prompt(gen: OpenAIGenerator) -> None:
    with pytest.raises(ContextTooLongError, match="exceeds the window"):
        gen.generate("word " * 4000, 200)


def test_wrong_api_key(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(ModelLoadError, match="HTTP 401"):
        load_generator(config(server))


def test_unreachable_server_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # bound, then closed again: nothing listens there
    with pytest.raises(ModelLoadError, match="cannot reach") as info:
        load_generator(config(url, timeout=5))
    assert "\n" not in str(info.value)


def test_base_url_is_required() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        load_generator(GeneratorConfig(backend="openai"))


YES_NO = "<|im_start|>user\nIs Paris the capital of France? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"


def test_word_probabilities_agree_with_local_llamacpp(gen: OpenAIGenerator) -> None:
    """Self-Route's judge through a server: the top-20 log-probabilities of one token give the same yes/no
    probabilities as the local llama.cpp softmax of the same GGUF."""
    local = load_generator(GeneratorConfig(model="embedded:smollm2", context_window=2048, threads=1))
    try:
        got = gen.word_probabilities(YES_NO, ["yes", "no"])
        want = local.word_probabilities(YES_NO, ["yes", "no"])
    finally:
        local.close()
    assert sum(want.probabilities) > 0.1  # the words are there to be read, not two zeros agreeing
    assert got.probabilities == pytest.approx(want.probabilities, abs=0.02)
    assert got.prompt_tokens > 0 and got.prefill_s > 0


@pytest.fixture(scope="module")
def server_without_logprobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory, "--logits_all", "False")


def test_a_server_without_log_probabilities_is_one_clear_line(server_without_logprobs: str) -> None:
    """llama-cpp-python's server started with --logits_all false refuses log-probabilities."""
    gen = load_generator(config(server_without_logprobs))
    with pytest.raises(ModelLoadError, match="log-probabilities.*--logits_all false") as info:
        gen.word_probabilities(YES_NO, ["yes", "no"])
    assert "\n" not in str(info.value)
