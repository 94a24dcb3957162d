"""Top-k search over a :class:`~chatqa.index.DocIndex`: dense, BM25, or both fused by reciprocal rank.

Results come back best first, with their ranks on each side kept for inspection; callers that build prompts
re-sort them into document order (OP-RAG, arXiv 2409.01666).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chatqa.chunking import Chunk
from chatqa.config import METHODS  # one list: the config layer validates it, search only guards
from chatqa.errors import InputError
from chatqa.index import DocIndex, bm25_tokens


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    dense_rank: int | None = None  # 1-based
    bm25_rank: int | None = None


def dense_ranking(index: DocIndex, query_vector: np.ndarray, n: int) -> list[tuple[int, float]]:
    """Best chunks by their best vector (MaxP); with one vector per chunk this is plain top-n."""
    total = index.faiss.ntotal
    depth = min(total, max(n * 8, 64))
    while True:
        scores, rows = index.faiss.search(query_vector[None, :].astype(np.float32), depth)
        best: dict[int, float] = {}
        for score, row in zip(scores[0], rows[0], strict=True):
            if row < 0:
                continue
            owner = int(index.owners[row])
            if owner not in best:
                best[owner] = float(score)
        if len(best) >= min(n, len(index.chunks)) or depth >= total:
            break
        depth = min(total, depth * 4)
    return sorted(best.items(), key=lambda kv: -kv[1])[:n]


def bm25_ranking(index: DocIndex, query: str, n: int) -> list[tuple[int, float]]:
    if index.bm25 is None:  # documents without a single term: dense alone ranks them
        return []
    vocab = index.bm25.vocab_dict
    tokens = [t for t in bm25_tokens([query])[0] if t in vocab]
    if not tokens:
        return []
    n = min(n, len(index.chunks))
    ids, scores = index.bm25.retrieve([tokens], k=n, show_progress=False, n_threads=1)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]


def rrf(rankings: list[list[tuple[int, float]]], k: int = 60) -> list[tuple[int, float]]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def search(
    index: DocIndex,
    query: str,
    k: int,
    method: str = "hybrid",
    embed_query: object | None = None,
    rrf_k: int = 60,
) -> list[Hit]:
    if method not in METHODS:
        raise ValueError(f"unknown retrieval method '{method}' (choose from {', '.join(METHODS)})")
    if method == "bm25" and index.bm25 is None:
        raise InputError("this index has no BM25 terms (no word of two or more characters); use dense or hybrid")
    depth = max(k * 4, 20)
    dense: list[tuple[int, float]] = []
    sparse: list[tuple[int, float]] = []
    if method in ("dense", "hybrid"):
        dense = dense_ranking(index, embed_query(query), depth)  # type: ignore[operator]
    if method in ("bm25", "hybrid"):
        sparse = bm25_ranking(index, query, depth)
    ranked = {"dense": dense, "bm25": sparse}.get(method) or rrf([dense, sparse], rrf_k)
    d_rank = {c: r for r, (c, _) in enumerate(dense, 1)}
    s_rank = {c: r for r, (c, _) in enumerate(sparse, 1)}
    return [Hit(index.chunks[c], s, d_rank.get(c), s_rank.get(c)) for c, s in ranked[:k]]
