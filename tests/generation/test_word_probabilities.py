"""Next-token word probabilities through llama.cpp on the shipped default model (Qwen2.5-Coder-0.5B): what
Self-Route's judge reads. They come from the same read of the prompt as a generation (same batches, same reuse),
so they agree with what the model then generates and reuse never changes them."""

from __future__ import annotations

import pytest

from chatqa.errors import ConfigError
from tests.conftest import SAMPLE

ASK = "Answer yes or no."


def chat(gen, text: str) -> str:  # noqa: ANN001 - LlamaCppGenerator
    return gen.render_chat([{"role": "user", "content": text}])


def test_the_more_probable_word_is_the_one_generated(default_qa) -> None:
    gen = default_qa.generator
    for question in ("Is Paris the capital of France?", "Is Paris the capital of Japan?"):
        prompt = chat(gen, f"{question} {ASK}")
        yes, no = gen.word_probabilities(prompt, ["yes", "no"]).probabilities
        assert 0.0 <= yes <= 1.0 and 0.0 <= no <= 1.0 and yes + no <= 1.0 + 1e-9
        said = gen.generate(prompt, 1).text.lower()
        assert said in ("yes", "no"), said
        assert (yes > no) == (said == "yes")


def test_reuse_changes_neither_the_probabilities_nor_the_next_answer(default_qa) -> None:
    gen = default_qa.generator
    doc = SAMPLE.read_text()[:5200]  # about 1,200 tokens: a second read reuses whole batches
    prompt = chat(gen, f"{doc}\n\nDoes this text say who the canal's chief engineer was? {ASK}")
    gen.llm.reset()
    cold = gen.word_probabilities(prompt, ["yes", "no"])
    again = gen.word_probabilities(prompt, ["yes", "no"])
    assert cold.cached_tokens == 0 and again.cached_tokens > 0
    assert again.probabilities == pytest.approx(cold.probabilities, rel=1e-6)
    after = gen.generate(prompt, 8)  # a generation right after reuses the judge's read
    gen.llm.reset()
    assert after.cached_tokens > 0 and after.text == gen.generate(prompt, 8).text


def test_a_word_that_is_not_one_token_is_refused(default_qa) -> None:
    gen = default_qa.generator
    with pytest.raises(ConfigError, match="'zqxjvbkw' is not a single token"):
        gen.word_probabilities(chat(gen, ASK), ["yes", "zqxjvbkw"])
