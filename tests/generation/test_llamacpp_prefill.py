"""llama.cpp reads a prompt batch by batch when asked to report it (a terminal's progress bar): the answer and
the work must be exactly those of a call that reports nothing. Real Gemma 3 270M (the session's ``qa``)."""

from __future__ import annotations

from typing import Any

from tests.conftest import SAMPLE


def _evaluated(gen: Any) -> int:
    """Tokens llama.cpp evaluated since the last reset of its counters (prompt batches and single tokens)."""
    import llama_cpp

    perf = llama_cpp.llama_perf_context(gen.llm._ctx.ctx)
    return int(perf.n_p_eval + perf.n_eval)


def _reset_counters(gen: Any) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(gen.llm._ctx.ctx)


def test_per_batch_reading_gives_the_same_answer_for_the_same_work(qa) -> None:
    gen, text = qa.generator, SAMPLE.read_text()
    prompt = f"{text[:6000]}\n\nQ: Who was the chief engineer of the canal?\nA:"  # ~1,500 tokens: 3 batches
    other = f"{text[9000:12000]}\n\nQ: What is this about?\nA:"
    gen.generate(other, 4, ["\n"])  # the held state does not match the prompt: both calls read it cold
    _reset_counters(gen)
    plain = gen.generate(prompt, 16, ["\n"])
    plain_work = _evaluated(gen)
    gen.generate(other, 4, ["\n"])
    seen: list[tuple[int, int]] = []
    _reset_counters(gen)
    reported = gen.generate(prompt, 16, ["\n"], on_prefill=lambda done, total: seen.append((done, total)))
    assert _evaluated(gen) == plain_work  # nothing read twice
    assert reported.text == plain.text and reported.prompt_tokens == plain.prompt_tokens
    n, batch = plain.prompt_tokens, gen.llm.n_batch
    assert seen[0] == (0, n) and seen[-1] == (n, n)
    assert [d for d, _ in seen] == [0, *range(batch, n, batch), n]  # one report per batch


def test_a_held_prefix_is_kept_and_only_the_rest_is_reported(qa) -> None:
    gen, text = qa.generator, SAMPLE.read_text()
    first = f"{text[:5200]}\n\nQ: Who first proposed a canal through the vale?\nA:"
    second = f"{text[:5200]}\n\nQ: How long is the Harrow Vale Canal?\nA:"
    gen.generate(first, 8, ["\n"])
    plain = gen.generate(second, 8, ["\n"])
    gen.generate(first, 8, ["\n"])
    seen: list[tuple[int, int]] = []
    reported = gen.generate(second, 8, ["\n"], on_prefill=lambda done, total: seen.append((done, total)))
    assert reported.cached_tokens == plain.cached_tokens > 0 and reported.text == plain.text
    assert seen[0] == (0, reported.prompt_tokens - reported.cached_tokens) and seen[-1][0] == seen[-1][1]
