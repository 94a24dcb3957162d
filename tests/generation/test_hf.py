"""The transformers backend on the real embedded SmolLM2 GGUF (dequantized to fp32), checked against llama.cpp.

The model loads once for the module (16-35 s); every generation here is kept to a few dozen tokens because
transformers decodes at ~10 tokens/s on two CPU cores.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from chatqa.config import GeneratorConfig
from chatqa.errors import ContextTooLongError, ModelLoadError
from chatqa.generation import load_generator, load_tokenizer
from chatqa.generation.hf import HFGenerator, rope_parameters

WINDOW = 2048
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. " * 6
PASSKEY = [
    {
        "role": "user",
        "content": FILLER + "The pass key is 71432. Remember it. 71432 is the pass key. " + FILLER
        + "What is the pass key?",
    }
]  # fmt: skip
DOC = "Harrow Canal opened in 1794 and carried coal from the northern pits to the river port at Lowmarsh. " * 8


def config(backend: str) -> GeneratorConfig:
    """One thread: both torch and llama.cpp threads wait at barriers, and on a busy 2-core box two crawl (10x)."""
    return GeneratorConfig(backend=backend, model="embedded:smollm2", context_window=WINDOW, threads=1)


@pytest.fixture(scope="module")
def hf() -> HFGenerator:
    gen = load_generator(config("hf"))
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def llamacpp():  # noqa: ANN201 - LlamaCppGenerator
    gen = load_generator(config("llamacpp"))
    yield gen
    gen.close()


def fresh(gen: HFGenerator) -> None:
    """Make the next call compute its whole prompt: a prompt sharing no first token replaces the held cache."""
    assert gen.generate("Zebras", 1).cached_tokens == 0


def test_tokenizer_round_trip_and_count(hf: HFGenerator, llamacpp) -> None:
    tok = hf.tokenizer
    assert tok.id == "hf:embedded:smollm2"
    for text in ["Hello world", "  two  spaces\n\ttab", "naïve café 日本語 🙂", "<|im_start|>user hi"]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text.replace("<|im_start|>", "")  # special tokens are not shown
        assert ids == llamacpp.tokenizer.encode(text)
        assert tok.count(text) == llamacpp.tokenizer.count(text)  # special-token text counts as plain text
    assert tok.count("<|im_start|>") > len(tok.encode("<|im_start|>")) == 1


def test_load_tokenizer_alone() -> None:
    tok = load_tokenizer(config("hf"))
    assert tok.encode("Hello world") == [19556, 905]


def test_greedy_generation(hf: HFGenerator) -> None:
    prompt = hf.render_chat(QUESTION)
    out = hf.generate(prompt, 24)
    assert "Paris" in out.text
    assert out.finish_reason == "eos" and 0 < out.completion_tokens < 24
    assert out.prompt_tokens == len(hf.tokenizer.encode(prompt))
    assert out.prefill_s > 0 and out.decode_s > 0


def test_max_new_tokens(hf: HFGenerator) -> None:
    out = hf.generate("Count from one to fifty: one, two, three,", 5)
    assert out.completion_tokens == 5 and out.finish_reason == "length" and out.text


def test_stop_strings_and_streaming(hf: HFGenerator) -> None:
    prompt = "The colours of the rainbow are red, orange,"
    full = hf.generate(prompt, 12)
    stop = " " + full.text.split()[2]  # a string the model really writes, so the stop has something to cut
    pieces: list[str] = []
    out = hf.generate(prompt, 12, stop=[stop], on_text=pieces.append)
    assert out.finish_reason == "stop" and out.completion_tokens < 12
    assert out.text == full.text[: full.text.index(stop)].strip()
    assert "".join(pieces).strip() == out.text and len(pieces) > 1


def test_prefix_reuse_gives_identical_output(hf: HFGenerator) -> None:
    first = DOC + "\nQuestion: When did the canal open?\nAnswer:"
    second = DOC + "\nQuestion: What did it carry?\nAnswer:"
    fresh(hf)
    cold = hf.generate(second, 8)
    assert cold.cached_tokens == 0
    hf.generate(first, 1)
    warm = hf.generate(second, 8)
    shared = len(hf.tokenizer.encode(DOC + "\nQuestion: Wh"))
    assert shared - 2 <= warm.cached_tokens < warm.prompt_tokens
    assert (warm.text, warm.completion_tokens, warm.finish_reason) == (cold.text, cold.completion_tokens, "length")
    again = hf.generate(second, 8)  # the same prompt again: everything but the last token is reused
    assert again.cached_tokens == again.prompt_tokens - 1 and again.text == cold.text


def test_render_chat_is_chatml(hf: HFGenerator, llamacpp) -> None:
    prompt = hf.render_chat([{"role": "user", "content": "Hi there"}])
    assert prompt.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt == llamacpp.render_chat([{"role": "user", "content": "Hi there"}])


def test_too_long_prompt(hf: HFGenerator) -> None:
    with pytest.raises(ContextTooLongError, match="exceeds the window"):
        hf.generate("word " * WINDOW, 16)
    near = "word " * (WINDOW - 100)  # fits alone, not with the answer budget
    with pytest.raises(ContextTooLongError):
        hf.generate(near, 200)


@pytest.mark.parametrize("messages", [QUESTION, PASSKEY], ids=["question", "passkey"])
def test_same_greedy_answer_as_llamacpp(hf: HFGenerator, llamacpp, messages: list[dict[str, str]]) -> None:
    prompt = hf.render_chat(messages)
    a, b = hf.generate(prompt, 12), llamacpp.generate(prompt, 12)
    assert a.text == b.text and a.prompt_tokens == b.prompt_tokens
    if messages is PASSKEY:
        assert "71432" in a.text


def test_word_probabilities_agree_with_llamacpp(hf: HFGenerator, llamacpp) -> None:
    """Self-Route's judge reads the same yes/no probabilities from both backends (one GGUF: dequantized here)."""
    prompt = hf.render_chat([{"role": "user", "content": "Is Paris the capital of France? Answer yes or no."}])
    got = hf.word_probabilities(prompt, ["yes", "no"])
    want = llamacpp.word_probabilities(prompt, ["yes", "no"])
    assert sum(want.probabilities) > 0.1  # the words are there to be read, not two zeros agreeing
    assert got.probabilities == pytest.approx(want.probabilities, abs=0.05)
    assert got.prompt_tokens == want.prompt_tokens


def test_rope_scaling_maps_onto_rope_parameters(hf: HFGenerator) -> None:
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    base = hf.model.config
    theta = base.rope_parameters["rope_theta"]
    inv_freq = LlamaRotaryEmbedding(config=base).inv_freq
    linear = copy.deepcopy(base)
    rope_parameters(linear, {"type": "linear", "factor": 4})
    assert linear.rope_parameters == {"rope_type": "linear", "factor": 4.0, "rope_theta": theta}
    assert linear.max_position_embeddings == 4 * base.max_position_embeddings
    assert torch.allclose(LlamaRotaryEmbedding(config=linear).inv_freq, inv_freq / 4)
    yarn = copy.deepcopy(base)
    rope_parameters(yarn, {"type": "yarn", "factor": 4, "original_context": 8192})
    assert yarn.rope_parameters["original_max_position_embeddings"] == 8192
    assert LlamaRotaryEmbedding(config=yarn).attention_scaling > 1
    dynamic = copy.deepcopy(base)
    rope_parameters(dynamic, {"type": "dynamic", "factor": 2})
    assert dynamic.max_position_embeddings == base.max_position_embeddings  # scales only past the trained length
    with pytest.raises(ModelLoadError, match="unknown rope type"):
        rope_parameters(copy.deepcopy(base), {"type": "ntk-by-parts", "factor": 2})


def test_nested_rope_scales_only_full_attention() -> None:
    from types import SimpleNamespace

    cfg = SimpleNamespace(
        max_position_embeddings=32768,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
        },
    )
    rope_parameters(cfg, {"type": "linear", "factor": 2})
    assert cfg.rope_parameters["full_attention"] == {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0}
    assert cfg.rope_parameters["sliding_attention"] == {"rope_type": "default", "rope_theta": 10000.0}


@pytest.mark.parametrize("model", ["no-such-org/no-such-model", "/nonexistent/model.gguf"])
def test_missing_model_is_one_clear_line(model: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_tokenizer(GeneratorConfig(backend="hf", model=model))
    assert "\n" not in str(info.value) and model.split("/")[-1] in str(info.value)


@pytest.mark.slow
def test_gemma_sliding_window_prefix_reuse_past_the_window() -> None:
    """Gemma 3 (the default model) has 512-token sliding layers: a second question on a longer document must still
    reuse the document, and agree with a cold run and with llama.cpp. Loading Gemma in transformers takes ~50 s."""
    cfg = GeneratorConfig(backend="hf", model="embedded:gemma3-270m", context_window=WINDOW, threads=1)
    gemma = load_generator(cfg)
    try:
        doc = FILLER * 3 + "The pass key is 71432. Remember it. 71432 is the pass key. " + FILLER * 3
        first, second = doc + "What is the pass key? The pass key is", doc + "Repeat the pass key. The pass key is"
        cold = gemma.generate(second, 6)
        gemma.generate(first, 1)
        warm = gemma.generate(second, 6)
        assert cold.cached_tokens == 0 and warm.prompt_tokens > 512 + 20 and warm.cached_tokens > 512
        assert warm.text == cold.text and "71432" in warm.text
    finally:
        gemma.close()
    reference = load_generator(dataclasses.replace(cfg, backend="llamacpp"))
    try:
        assert reference.generate(second, 6).text == warm.text
    finally:
        reference.close()
