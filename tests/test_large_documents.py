"""Issue 11 item 4: a document far larger than the window is refused from a prefix's estimate, before the whole
text is tokenized (tokenizing grows faster than linearly: a 5 MB text took minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatqa.errors import ContextTooLongError
from chatqa.pipeline import ESTIMATE_MARGIN
from tests.conftest import SAMPLE


def test_long_mode_refuses_a_huge_document_from_an_estimate(qa, tmp_path: Path) -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    window = qa.generator.context_window
    copies = 1 + (ESTIMATE_MARGIN + 1) * window * 5 // len(text)  # > (margin + 1) windows at >= 1 token per 5 chars
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join([text] * copies), encoding="utf-8")
    with pytest.raises(ContextTooLongError, match=r"about [\d,]+ tokens \(estimated from its first 200,000"):
        qa.ask("Who was the chief engineer?", docs=[big], mode="long")


def test_a_document_near_the_window_is_counted_exactly(qa) -> None:
    """The estimate only ever says "does not fit": the sample (a third of the window) is tokenized whole."""
    text = SAMPLE.read_text(encoding="utf-8")
    tokens, exact = qa._document_tokens(text, room=qa.generator.context_window)
    assert exact and tokens == qa.tokenizer.count(text)
    tokens, exact = qa._document_tokens(text * 20, room=1_000)
    assert not exact and tokens > ESTIMATE_MARGIN * 1_000


def test_planning_and_the_refusal_load_no_generator(tmp_path: Path) -> None:
    """A refusal needs the tokenizer only (issue 11 item 4: under 2 s for the whole process). With a chat profile
    the prompt's frame comes from the template in the GGUF's vocabulary: the same text the loaded model renders."""
    from chatqa import ChatQA

    qa = ChatQA.from_profile("default", home=str(tmp_path))  # Qwen 0.5B, chat template
    text = SAMPLE.read_text(encoding="utf-8")
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join([text] * 40), encoding="utf-8")
    with pytest.raises(ContextTooLongError, match="estimated"):
        qa.ask("Who was the chief engineer?", docs=[big], mode="long")
    request = qa.request("Who was the chief engineer?", [big], mode="rag")
    unloaded = qa.plan(request)
    assert qa._generator is None and qa._tokenizer is not None and unloaded.route.route == "rag"
    _ = qa.generator
    loaded = qa.plan(request)
    assert unloaded.frame.fill("CONTEXT").text == loaded.frame.fill("CONTEXT").text
    assert "<|im_start|>assistant" in unloaded.frame.fill("CONTEXT").text
    assert (unloaded.route, unloaded.doc_tokens, unloaded.room) == (loaded.route, loaded.doc_tokens, loaded.room)
    qa.close()
