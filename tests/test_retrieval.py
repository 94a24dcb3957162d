"""Planted facts in a real novel: can hybrid retrieval find the chunk that holds each one?

Ten invented sentences are inserted at evenly spaced paragraph breaks of *The Adventures of Sherlock Holmes*
(about 140K generator tokens, ~120 chunks); each question paraphrases its fact. hit@5 is printed per method
and asserted, and the windowed max-pooling choice (MaxP) is compared with mean pooling on the same vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

from chatqa.ingest import Document, read_sources
from chatqa.retrieval import search
from tests.conftest import shared

FACTS = [
    ("The vault beneath the Diogenes Club is guarded by a parrot named Archimedes.",
     "What is the name of the parrot that guards the Diogenes Club vault?", "Archimedes"),
    ("Mrs. Hudson keeps her spare latchkey inside a blue teapot from Canton.",
     "Where does Mrs. Hudson keep her spare latchkey?", "blue teapot"),
    ("The cipher used by the Red Circle gang was based on the 1871 railway timetable of Crewe.",
     "Which timetable was the Red Circle gang's cipher based on?", "Crewe"),
    ("Inspector Lestrade's first case was the theft of forty silver spoons from Brixton Hall.",
     "What was stolen in Inspector Lestrade's first case?", "silver spoons"),
    ("Dr. Watson's army pension amounted to eleven shillings and sixpence a day.",
     "How much was Dr. Watson's army pension per day?", "eleven shillings"),
    ("The Baker Street Irregulars met every Thursday under the arch of Marylebone quarry bridge.",
     "Where did the Baker Street Irregulars hold their Thursday meetings?", "Marylebone quarry bridge"),
    ("Holmes once measured the boiling point of laudanum at 97 degrees on his own thermometer.",
     "At what temperature did Holmes measure laudanum boiling?", "97 degrees"),
    ("The violin Holmes played was made in Cremona by a luthier called Benedetto Falcone.",
     "Who made the violin Holmes played?", "Benedetto Falcone"),
    ("Mycroft Holmes insists that his morning kippers are smoked over juniper wood from Inverness.",
     "Over what wood are Mycroft's kippers smoked?", "juniper"),
    ("The stolen Carbuncle of Vashti was finally insured for nine thousand guineas by Lloyd's.",
     "For how much was the Carbuncle of Vashti insured?", "nine thousand guineas"),
]  # fmt: skip


def plant(text: str) -> tuple[str, list[int]]:
    """Insert each fact as its own paragraph at evenly spaced paragraph breaks; return fact offsets."""
    breaks = [i for i in range(len(text) - 1) if text[i : i + 2] == "\n\n"]
    picks = [breaks[int(len(breaks) * (j + 0.5) / len(FACTS))] for j in range(len(FACTS))]
    out, offsets, last = [], [], 0
    for pos, (fact, _, _) in zip(picks, FACTS, strict=True):
        out.append(text[last:pos])
        offsets.append(sum(map(len, out)) + 2)
        out.append(f"\n\n{fact}")
        last = pos
    out.append(text[last:])
    return "".join(out), offsets


@pytest.fixture(scope="module")
def planted(qa):
    novel = read_sources([str(shared("gutenberg", "pg1661.txt"))])[0]
    text, offsets = plant(novel.text)
    doc = Document.from_text(text, "sherlock-planted.txt")
    index = qa.index([doc])
    gold = []
    for (fact, _, _), off in zip(FACTS, offsets, strict=True):
        assert text[off : off + len(fact)] == fact
        gold.append({c.id for c in index.chunks if c.start <= off and off + len(fact) <= c.end})
    assert all(len(g) == 1 for g in gold), "each fact sits inside exactly one chunk"
    return index, gold


def hit_at(qa, index, gold, method: str, k: int = 5) -> float:
    hits = 0
    for (_, question, _), g in zip(FACTS, gold, strict=True):
        found = {h.chunk.id for h in search(index, question, k, method, qa.embedder.embed_query)}
        hits += bool(found & g)
    return hits / len(FACTS)


def test_hybrid_retrieval_finds_planted_facts(qa, planted) -> None:
    index, gold = planted
    assert len(index.chunks) > 100
    scores = {m: hit_at(qa, index, gold, m) for m in ("dense", "bm25", "hybrid")}
    print(f"\nhit@5 over {len(FACTS)} planted facts in {len(index.chunks)} chunks: {scores}")
    assert scores["hybrid"] >= 0.9
    assert scores["dense"] >= 0.7
    assert scores["bm25"] >= 0.7


def test_max_pooling_beats_mean_pooling_of_windows(qa, planted) -> None:
    """The choice stated in chatqa.embedding: a chunk scores as its best window, not their average."""
    index, gold = planted
    vectors = index.faiss.reconstruct_n(0, index.faiss.ntotal)
    owners = index.owners
    assert len(vectors) > len(index.chunks), "1200-token chunks need several 256-token windows"
    mean = np.zeros((len(index.chunks), vectors.shape[1]), dtype=np.float32)
    np.add.at(mean, owners, vectors)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    rank_max, rank_mean = [], []
    for (_, question, _), g in zip(FACTS, gold, strict=True):
        q = qa.embedder.embed_query(question)
        window_scores = vectors @ q
        best = np.full(len(index.chunks), -1.0)
        np.maximum.at(best, owners, window_scores)
        target = next(iter(g))
        rank_max.append(int((best > best[target]).sum()) + 1)
        mean_scores = mean @ q
        rank_mean.append(int((mean_scores > mean_scores[target]).sum()) + 1)
    print(f"\nrank of the gold chunk, max pooling: {rank_max}; mean pooling: {rank_mean}")
    assert np.mean([r <= 5 for r in rank_max]) >= np.mean([r <= 5 for r in rank_mean])
    assert np.mean(rank_max) < np.mean(rank_mean)


def test_windows_cover_every_chunk(qa, planted) -> None:
    index, _ = planted
    emb = qa.embedder
    for chunk in index.chunks[:10]:
        windows = emb.windows(chunk.text)
        assert all(len(emb.tokenizer(w)["input_ids"]) <= emb.model.max_seq_length for w in windows)
        covered = "".join(windows)
        assert all(word in covered for word in chunk.text.split())
        assert windows[0] == chunk.text[: len(windows[0])].lstrip() or chunk.text.lstrip().startswith(windows[0])


# -- issue 11, item 8: a document with no BM25 term ---------------------------------------------------------
def test_a_document_without_any_bm25_term_is_indexed_dense_only(qa, tmp_path, capsys) -> None:
    from chatqa.config import Config
    from chatqa.errors import InputError
    from chatqa.index import open_index

    doc = Document.from_text("1 2 3 - + =\n4 5 6 * / %\n", name="signs.txt")
    index = open_index([doc], Config(), qa.tokenizer, lambda: qa.embedder, home=tmp_path / "idx")
    assert index.built and index.bm25 is None and len(index.chunks) == 1
    assert "BM25 is off" in capsys.readouterr().err
    hits = search(index, "what comes after 3?", 3, "hybrid", qa.embedder.embed_query)
    assert [h.chunk.id for h in hits] == [0] and hits[0].bm25_rank is None
    with pytest.raises(InputError, match="no BM25"):
        search(index, "what comes after 3?", 3, "bm25")
    reopened = open_index([doc], Config(), qa.tokenizer, lambda: qa.embedder, home=tmp_path / "idx")
    assert not reopened.built and reopened.bm25 is None
