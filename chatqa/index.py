"""A persisted index for one document set: chunks, a FAISS index of their vectors, and BM25 beside it.

Each set lives in ``<home>/<hash>/`` (never a user path) with a manifest of everything that shaped it. A
matching manifest means reuse; any difference (a document's sha256, chunk size, tokenizer, retriever) means a
rebuild. Builds happen in a temporary folder that is renamed into place under a file lock, so a crash or a
second process never leaves a half-written index where a reader could load it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from chatqa import __version__
from chatqa.chunking import Chunk, chunk_documents
from chatqa.config import Config
from chatqa.ingest import Document

FORMAT = 1


def retriever_id(config: Config) -> str:
    r = config.retriever
    return f"{r.model}|seq{r.max_seq_tokens}|stride{r.window_stride}|{r.pooling}|{r.passage_prefix!r}"


def index_key(docs: Sequence[Document], config: Config, tokenizer_id: str) -> str:
    """Folder name: which documents (by path, or content for stdin) and how they were cut and embedded."""
    ident = {
        "sources": [d.source or f"sha256:{d.sha256}" for d in docs],
        "chunking": vars(config.chunking),
        "tokenizer": tokenizer_id,
        "retriever": retriever_id(config),
        "index_type": config.retrieval.index_type,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def expected_manifest(docs: Sequence[Document], config: Config, tokenizer_id: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "documents": [{"name": d.name, "source": d.source, "sha256": d.sha256} for d in docs],
        "chunking": vars(config.chunking),
        "tokenizer": tokenizer_id,
        "retriever": retriever_id(config),
        "index_type": config.retrieval.index_type,
    }


@dataclass
class DocIndex:
    path: Path
    manifest: dict[str, Any]
    chunks: list[Chunk]
    owners: np.ndarray  # vector row -> chunk id
    faiss: Any
    bm25: Any
    built: bool = False  # True when this call built it, False when it was reused
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return sum(c.n_tokens for c in self.chunks)

    def doc_tokens(self, doc: int) -> int:
        return sum(c.n_tokens for c in self.chunks if c.doc == doc)


def make_faiss(vectors: np.ndarray, index_type: str, ann_threshold: int) -> Any:
    import faiss

    n, dim = vectors.shape
    kind = index_type if index_type != "auto" else ("hnsw" if n > ann_threshold else "flat")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    elif kind == "ivf":
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, nlist // 8)
    else:
        raise ValueError(f"unknown index type '{index_type}' (flat, hnsw, ivf, auto)")
    index.add(vectors)
    return index


def bm25_tokens(texts: Sequence[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def build_bm25(texts: Sequence[str]) -> Any:
    import bm25s

    bm25 = bm25s.BM25()
    bm25.index(bm25_tokens(texts), show_progress=False)
    return bm25


def _write(path: Path, chunks: list[Chunk], owners: np.ndarray, index: Any, bm25: Any, manifest: dict) -> None:
    import faiss

    with open(path / "chunks.jsonl", "w", encoding="utf-8") as f:
        for c in chunks:
            f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    np.save(path / "owners.npy", owners)
    faiss.write_index(index, str(path / "vectors.faiss"))
    bm25.save(str(path / "bm25"), show_progress=False)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def load_index(path: Path) -> DocIndex:
    import bm25s
    import faiss

    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    with open(path / "chunks.jsonl", encoding="utf-8") as f:
        chunks = [Chunk(**json.loads(line)) for line in f]
    return DocIndex(
        path=path,
        manifest=manifest,
        chunks=chunks,
        owners=np.load(path / "owners.npy"),
        faiss=faiss.read_index(str(path / "vectors.faiss")),
        bm25=bm25s.BM25.load(str(path / "bm25"), show_progress=False),
    )


def _matches(path: Path, expected: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all(manifest.get(k) == v for k, v in expected.items())


def open_index(
    docs: Sequence[Document],
    config: Config,
    tokenizer: Any,
    embedder: Callable[[], Any],
    home: Path | None = None,
    progress: bool = False,
    rebuild: bool = False,
) -> DocIndex:
    """Load the index for ``docs`` if an up-to-date one exists, else build it. ``embedder`` is a factory so a
    reused index never pays for loading the retriever model."""
    home = Path(home or config.index_home)
    home.mkdir(parents=True, exist_ok=True)
    key = index_key(docs, config, tokenizer.id)
    final = home / key
    expected = expected_manifest(docs, config, tokenizer.id)
    with FileLock(str(home / f".{key}.lock")):
        if not rebuild and _matches(final, expected):
            return load_index(final)
        start = time.perf_counter()
        chunks = chunk_documents(docs, tokenizer.count, config.chunking.chunk_tokens, config.chunking.overlap_tokens)
        chunked = time.perf_counter()
        model = embedder()
        vectors, owners = model.embed_chunks([c.text for c in chunks], show_progress=progress)
        embedded = time.perf_counter()
        index = make_faiss(vectors, config.retrieval.index_type, config.retrieval.ann_threshold)
        bm25 = build_bm25([c.text for c in chunks])
        stats = {
            "chunk_s": chunked - start,
            "embed_s": embedded - chunked,
            "index_s": time.perf_counter() - embedded,
            "n_chunks": len(chunks),
            "n_vectors": int(vectors.shape[0]),
            "tokens": sum(c.n_tokens for c in chunks),
        }
        manifest = {
            **expected,
            "chatqa_version": __version__,
            "dim": int(vectors.shape[1]),
            "faiss": type(index).__name__,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stats": stats,
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=home))
        try:
            _write(tmp, chunks, owners, index, bm25, manifest)
            _swap(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out = DocIndex(final, manifest, chunks, owners, index, bm25, built=True, stats=stats)
        return out


def _swap(new: Path, final: Path) -> None:
    """Put ``new`` at ``final``; a reader (holding the same lock) sees either the old or the new index."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
