"""Index persistence: reuse when nothing changed, rebuild when anything did, never a half-written index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatqa.config import Config
from chatqa.index import open_index
from chatqa.ingest import read_sources

TEXT = "\n\n".join(f"Paragraph {i}: the lighthouse keeper logged {i * 7} gulls and one storm." for i in range(300))


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "log.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def build(qa, doc: Path, home: Path, **overrides):
    config = Config().replace(**overrides) if overrides else Config()
    return open_index(read_sources([str(doc)]), config, qa.tokenizer, lambda: qa.embedder, home=home)


def test_reuse_then_rebuild_on_change(qa, doc: Path, tmp_path: Path) -> None:
    home = tmp_path / "idx"
    first = build(qa, doc, home)
    assert first.built and len(first.chunks) > 1
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["documents"][0]["sha256"] == read_sources([str(doc)])[0].sha256
    assert manifest["chunking"] == {"chunk_tokens": 1200, "overlap_tokens": 0}
    assert manifest["tokenizer"].startswith("gguf:") and manifest["dim"] == 384
    assert str(doc) not in first.path.name and len(first.path.name) == 20

    again = build(qa, doc, home)
    assert not again.built and again.path == first.path
    assert [c.text for c in again.chunks] == [c.text for c in first.chunks]
    assert again.faiss.ntotal == first.faiss.ntotal

    doc.write_text(TEXT.replace("storm", "gale"), encoding="utf-8")
    changed = build(qa, doc, home)
    assert changed.built and changed.path == first.path  # same document set, rebuilt in place
    assert "gale" in changed.chunks[0].text

    smaller = build(qa, doc, home, **{"chunking.chunk_tokens": 300})
    assert smaller.built and smaller.path != first.path
    assert max(c.n_tokens for c in smaller.chunks) <= 300
    leftovers = [p.name for p in home.iterdir() if p.name.startswith((".tmp", ".old"))]
    assert leftovers == []


def test_failed_build_keeps_the_previous_index(qa, doc: Path, tmp_path: Path) -> None:
    home = tmp_path / "idx"
    first = build(qa, doc, home)
    before = (first.path / "chunks.jsonl").read_bytes()
    doc.write_text(TEXT + "\n\nA new final paragraph.", encoding="utf-8")

    def broken_embedder():
        raise RuntimeError("simulated crash while embedding")

    with pytest.raises(RuntimeError, match="simulated crash"):
        open_index(read_sources([str(doc)]), Config(), qa.tokenizer, broken_embedder, home=home)
    assert (first.path / "chunks.jsonl").read_bytes() == before
    assert [p.name for p in home.iterdir() if p.name.startswith(".tmp")] == []
    rebuilt = build(qa, doc, home)  # the stale index is still detected as stale and rebuilt
    assert rebuilt.built and "new final paragraph" in rebuilt.chunks[-1].text


def test_hnsw_and_ivf_index_types_search_like_flat(qa, doc: Path, tmp_path: Path) -> None:
    from chatqa.retrieval import search

    flat = build(qa, doc, tmp_path / "a", **{"chunking.chunk_tokens": 200})
    for kind in ("hnsw", "ivf"):
        other = build(qa, doc, tmp_path / kind, **{"chunking.chunk_tokens": 200, "retrieval.index_type": kind})
        assert other.manifest["faiss"] == {"hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}[kind]
        q = "how many gulls did the keeper log in paragraph 120?"
        a = [h.chunk.id for h in search(flat, q, 3, "dense", qa.embedder.embed_query)]
        b = [h.chunk.id for h in search(other, q, 3, "dense", qa.embedder.embed_query)]
        assert a[0] == b[0]
