from __future__ import annotations

import pytest

from chatqa.chunking import chunk_documents
from chatqa.ingest import Document, read_sources
from tests.conftest import shared


@pytest.fixture(scope="module")
def alice() -> Document:
    return read_sources([str(shared("gutenberg", "pg11.txt"))])[0]


@pytest.mark.parametrize(("size", "overlap"), [(1200, 0), (300, 50)])
def test_chunks_are_token_exact_and_keep_spans(alice: Document, tokenizer, size: int, overlap: int) -> None:
    chunks = chunk_documents([alice], tokenizer.count, size, overlap)
    assert len(chunks) > 5
    for c in chunks:
        assert c.n_tokens == tokenizer.count(c.text) <= size
        assert alice.text[c.start : c.end] == c.text
        first_line = alice.text.count("\n", 0, c.start + len(c.text) - len(c.text.lstrip())) + 1
        assert c.line_start == first_line
        assert c.line_start <= c.line_end
    # Document order, and without overlap the chunks tile the text: nothing is lost between them.
    assert [c.id for c in chunks] == sorted(c.id for c in chunks)
    assert all(a.start < b.start for a, b in zip(chunks, chunks[1:], strict=False))
    if overlap == 0:
        assert "".join(c.text for c in chunks).split() == alice.text.split()
    # Chunks are filled: merging paragraphs keeps them near the limit, not a stream of tiny fragments.
    full = [c for c in chunks[:-1] if c.n_tokens > 0.75 * size]
    assert len(full) >= 0.75 * (len(chunks) - 1)


def test_chunks_prefer_paragraph_boundaries(alice: Document, tokenizer) -> None:
    chunks = chunk_documents([alice], tokenizer.count, 1200, 0)
    ends_at_break = sum(c.text.endswith("\n\n") or c.end == len(alice.text) for c in chunks)
    assert ends_at_break >= 0.8 * len(chunks)


def test_multiple_documents_number_chunks_globally(tokenizer) -> None:
    docs = [Document.from_text("one. " * 400, "a.txt"), Document.from_text("two. " * 400, "b.txt")]
    chunks = chunk_documents(docs, tokenizer.count, 200, 0)
    assert [c.id for c in chunks] == list(range(len(chunks)))
    assert {c.doc_name for c in chunks} == {"a.txt", "b.txt"}
    assert chunks[-1].doc == 1
    assert chunks[0].citation.startswith("a.txt:1-")


def test_a_long_document_is_tokenized_in_pieces_each_about_once(alice: Document) -> None:
    """Issue 11 item 4: indexing a 5 MB document must cost about one tokenization of its text, in pieces of at
    most a few chunks, never the whole text at once (tokenizing one huge string grows faster than linearly).
    A word counter stands in for the tokenizer: this checks what is counted, not how."""
    seen: list[int] = []

    def count(text: str) -> int:
        seen.append(len(text))
        return len(text.split())

    paragraphs = "\n\n".join([alice.text] * 4).split("\n\n")
    text = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(paragraphs))  # every piece distinct: no memo hits
    chunks = chunk_documents([Document.from_text(text)], count, 300)
    assert "".join(c.text for c in chunks).split() == text.split()
    assert max(seen) <= 20 * max(len(c.text) for c in chunks)
    assert sum(seen) <= 2.5 * len(text), f"counted {sum(seen) / len(text):.1f}x the text"
