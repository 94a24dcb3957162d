"""In-memory KV reuse must be invisible in the output: reuse stops at a boundary of the cold read's batches
(multiples of n_batch, and the end of the shared prefix when the prompt has one; see _cuts and _align_reuse)."""

from __future__ import annotations

from tests.conftest import SAMPLE


def test_prefix_reuse_is_batch_aligned_and_output_identical(qa) -> None:
    gen = qa.generator
    doc = SAMPLE.read_text()[:5200]  # about 1,300 tokens: the shared prefix ends mid-batch
    first = f"{doc}\n\nQ: Who first proposed a canal through the vale?\nA:"
    second = f"{doc}\n\nQ: How long is the Harrow Vale Canal?\nA:"
    gen.generate(first, 8, ["\n"])
    reused = gen.generate(second, 8, ["\n"])
    assert reused.cached_tokens > 0 and reused.cached_tokens % gen.llm.n_batch == 0
    gen.llm.reset()
    cold = gen.generate(second, 8, ["\n"])
    assert cold.cached_tokens == 0
    assert reused.text == cold.text


def test_a_shared_prefix_is_reused_whole_and_output_identical(qa) -> None:
    """With its shared prefix named, a prompt is read with a batch break where the prefix ends: a second question
    reuses the whole prefix (not the multiple of n_batch below it) and answers as a cold read does. A held state
    read without that break is reused only up to the multiple of n_batch, where the two reads still agree."""
    gen = qa.generator
    doc = SAMPLE.read_text()[:5200]
    first = f"{doc}\n\nQ: Who first proposed a canal through the vale?\nA:"
    second = f"{doc}\n\nQ: How long is the Harrow Vale Canal?\nA:"
    gen.generate(first, 8, ["\n"], prefix=doc)
    reused = gen.generate(second, 8, ["\n"], prefix=doc)
    cut = gen._prefix_cut(gen.tokenizer.encode(second, add_bos=True), doc)
    assert reused.cached_tokens == cut and cut % gen.llm.n_batch != 0
    gen.generate(first, 8, ["\n"])  # the same tokens read without the prefix's break
    mixed = gen.generate(second, 8, ["\n"], prefix=doc)
    assert mixed.cached_tokens == cut - cut % gen.llm.n_batch
    gen.llm.reset()
    cold = gen.generate(second, 8, ["\n"], prefix=doc)
    assert cold.cached_tokens == 0
    assert reused.text == mixed.text == cold.text


def test_threads_default_to_the_cores_this_process_may_use(qa) -> None:
    import os

    from chatqa.generation.llamacpp import usable_cores

    assert usable_cores() == len(os.sched_getaffinity(0))
    assert qa.generator.llm.n_threads == qa.generator.llm.n_threads_batch == usable_cores()
