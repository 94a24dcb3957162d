"""In-memory KV reuse must be invisible in the output: reuse stops at a batch boundary (see _align_reuse)."""

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


def test_threads_default_to_the_cores_this_process_may_use(qa) -> None:
    import os

    from chatqa.generation.llamacpp import usable_cores

    assert usable_cores() == len(os.sched_getaffinity(0))
    assert qa.generator.llm.n_threads == qa.generator.llm.n_threads_batch == usable_cores()
