"""A persisted index for one document set: chunks, a FAISS index of their vectors, and BM25 beside it.

Each set lives in ``<home>/<hash>/`` (never a user path) with a manifest of everything that shaped it. A
matching manifest means reuse; any difference (a document's sha256, chunk size, tokenizer, retriever) means a
rebuild. Builds happen in a temporary folder that is renamed into place under a file lock, so a crash or a
second process never leaves a half-written index where a reader could load it.

Reuse is verified, not assumed: the manifest records every file's size and xxh3-128 checksum (the chunk texts
included, so an edited ``chunks.jsonl`` cannot put invented text in a citation), and each chunk must still be
the slice of the document it claims to be. A damaged index is rebuilt with one notice. Reading takes no lock,
so an index home on a read-only disk serves its up-to-date indexes; the lock is taken only to write.
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
import xxhash
from filelock import FileLock, Timeout

from chatqa import __version__
from chatqa.chunking import Chunk, chunk_documents
from chatqa.config import Config
from chatqa.errors import InputError
from chatqa.ingest import Document
from chatqa.notices import notice

FORMAT = 3  # 2: file checksums in the manifest, optional BM25; 3: chunks carry PDF pages


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
    bm25: Any  # None when the documents have no BM25 term (no word of two or more characters)
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
    """BM25 over the chunks, or None when no chunk has a single term (a table of digits and signs, or only
    stopwords): bm25s cannot index an empty vocabulary, and dense retrieval still works on such text."""
    import bm25s

    tokens = bm25_tokens(texts)
    if not any(tokens):
        return None
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    return bm25


def _checksums(path: Path) -> dict[str, dict[str, Any]]:
    """Size and xxh3-128 of every file of an index folder except the manifest, by relative path."""
    out = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "manifest.json"):
        h = xxhash.xxh3_128()
        with open(f, "rb") as handle:
            while block := handle.read(1 << 22):
                h.update(block)
        out[f.relative_to(path).as_posix()] = {"bytes": f.stat().st_size, "xxh3_128": h.hexdigest()}
    return out


def _write(path: Path, chunks: list[Chunk], owners: np.ndarray, index: Any, bm25: Any, manifest: dict) -> None:
    import faiss

    with open(path / "chunks.jsonl", "w", encoding="utf-8") as f:
        for c in chunks:
            f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    np.save(path / "owners.npy", owners)
    faiss.write_index(index, str(path / "vectors.faiss"))
    if bm25 is not None:
        bm25.save(str(path / "bm25"), show_progress=False)
    manifest = {**manifest, "bm25": bm25 is not None, "files": _checksums(path)}
    for f in path.rglob("*"):
        if f.is_file():
            _fsync(f)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    _fsync(path / "manifest.json")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Damaged(Exception):
    """An index folder whose files are not what its manifest says; the message says which file and how."""


def load_index(path: Path, docs: Sequence[Document] | None = None) -> DocIndex:
    """Load an index after checking every file against the manifest (and, given ``docs``, every chunk
    against the document text). Raises :class:`Damaged` with the first problem found."""
    import bm25s
    import faiss

    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Damaged(f"manifest.json unreadable: {type(exc).__name__}") from None
    actual = _checksums(path)
    for name, want in files.items():
        got = actual.get(name)
        if got is None:
            raise Damaged(f"{name} is missing")
        if got["bytes"] != want.get("bytes"):
            raise Damaged(f"{name} has {got['bytes']:,} bytes, the manifest says {want.get('bytes')}")
        if got["xxh3_128"] != want.get("xxh3_128"):
            raise Damaged(f"{name}: checksum mismatch")
    try:
        with open(path / "chunks.jsonl", encoding="utf-8") as f:
            chunks = [Chunk.from_dict(json.loads(line)) for line in f]
        index = DocIndex(
            path=path,
            manifest=manifest,
            chunks=chunks,
            owners=np.load(path / "owners.npy"),
            faiss=faiss.read_index(str(path / "vectors.faiss")),
            bm25=bm25s.BM25.load(str(path / "bm25"), show_progress=False) if manifest.get("bm25", True) else None,
        )
    except Exception as exc:  # noqa: BLE001 - checksums passed, yet a library refuses the bytes: still damage
        raise Damaged(
            f"cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
        ) from None
    for c in chunks if docs is not None else []:
        if not 0 <= c.doc < len(docs) or docs[c.doc].text[c.start : c.end] != c.text:
            raise Damaged(
                f"chunk {c.id} is not the text of {docs[c.doc].name if 0 <= c.doc < len(docs) else '?'} it cites"
            )
    return index


def _matches(path: Path, expected: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and all(
        _identity(manifest.get(k)) == _identity(v) if k == "documents" else manifest.get(k) == v
        for k, v in expected.items()
    )


def _identity(documents: Any) -> Any:
    """What makes two document lists the same index: their texts and where they were read from, not the names
    citations show (an eval names a book after each sample; callers relabel chunks with today's names)."""
    if not isinstance(documents, list):
        return documents
    return [{k: v for k, v in d.items() if k != "name"} if isinstance(d, dict) else d for d in documents]


def _try_open(final: Path, expected: dict[str, Any], docs: Sequence[Document]) -> tuple[DocIndex | None, str]:
    """The verified index, or None and why not: "" when there is none or it is out of date (a plain build),
    else what is damaged (a rebuild the user is told about)."""
    if not final.is_dir():
        return None, ""
    if (final / "manifest.json").is_file() and not _matches(final, expected):
        try:  # a readable manifest for other inputs is out of date, not damaged
            json.loads((final / "manifest.json").read_text(encoding="utf-8"))["documents"]
            return None, ""
        except (OSError, ValueError, KeyError, TypeError):
            pass
    try:
        return load_index(final, docs), ""
    except Damaged as exc:
        return None, str(exc)


def _clean_leftovers(home: Path, key: str) -> None:
    """Remove ``.tmp-*``/``.old-*`` folders of builds that were killed: ours (we hold its lock), and any other
    key's whose lock is free (no build of it is running)."""
    for p in home.iterdir():
        if not (p.name.startswith((".tmp-", ".old-")) and p.is_dir()):
            continue
        other = p.name[5:].split("-")[0]
        if other == key:
            shutil.rmtree(p, ignore_errors=True)
            continue
        lock = FileLock(str(home / f".{other}.lock"), timeout=0)
        try:
            with lock:
                shutil.rmtree(p, ignore_errors=True)
        except (Timeout, OSError):
            continue


def open_index(
    docs: Sequence[Document],
    config: Config,
    tokenizer: Any,
    embedder: Callable[[], Any],
    home: Path | None = None,
    progress: bool = False,
    rebuild: bool = False,
    key: str | None = None,
) -> DocIndex:
    """Load the index for ``docs`` if an up-to-date, intact one exists, else build it. ``embedder`` is a
    factory so a reused index never pays for loading the retriever model; ``key`` is :func:`index_key` when
    the caller already computed it."""
    home = Path(home or config.index_home)
    key = key or index_key(docs, config, tokenizer.id)
    final = home / key
    expected = expected_manifest(docs, config, tokenizer.id)
    damage = ""
    if not rebuild:  # no lock to read: a swap by a writer shows up as damage and is re-checked under its lock
        found, damage = _try_open(final, expected, docs)
        if found is not None:
            return found
    try:
        home.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(home / f".{key}.lock"))
        lock.acquire()
    except OSError as exc:
        why = f"the index {key} is damaged ({damage})" if damage else "there is no up-to-date index for these documents"
        raise InputError(
            f"{home} is read-only ({exc.strerror or exc}) and {why}; set CHATQA_HOME to a writable folder"
        ) from None
    try:
        _clean_leftovers(home, key)
        if not rebuild:  # another process may have built it while this one waited for the lock
            found, damage = _try_open(final, expected, docs)
            if found is not None:
                return found
            if damage:
                notice(f"index {key} is damaged ({damage}): rebuilding it")
        return _build(docs, config, tokenizer, embedder, home, key, expected, progress)
    finally:
        lock.release()


def _build(
    docs: Sequence[Document],
    config: Config,
    tokenizer: Any,
    embedder: Callable[[], Any],
    home: Path,
    key: str,
    expected: dict[str, Any],
    progress: bool,
) -> DocIndex:
    final = home / key
    start = time.perf_counter()
    if progress:
        from chatqa.progress import stage

        stage(f"indexing: chunking {sum(len(d.text) for d in docs):,} characters")
    chunks = chunk_documents(docs, tokenizer.count, config.chunking.chunk_tokens, config.chunking.overlap_tokens)
    chunked = time.perf_counter()
    model = embedder()
    vectors, owners = model.embed_chunks([c.text for c in chunks], show_progress=progress)
    embedded = time.perf_counter()
    index = make_faiss(vectors, config.retrieval.index_type, config.retrieval.ann_threshold)
    bm25 = build_bm25([c.text for c in chunks])
    if bm25 is None:
        notice("no word of two or more letters or digits in the documents: BM25 is off, retrieval is dense only")
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
        manifest = json.loads((tmp / "manifest.json").read_text(encoding="utf-8"))
        _swap(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        from chatqa.progress import say

        took = time.perf_counter() - start
        say(f"indexed {len(chunks):,} chunks, {stats['tokens']:,} tokens in {took:.1f}s "
            f"({stats['tokens'] / max(took, 1e-9):,.0f} tokens/s)")  # fmt: skip
    return DocIndex(final, manifest, chunks, owners, index, bm25, built=True, stats=stats)


def _swap(new: Path, final: Path) -> None:
    """Put ``new`` at ``final``; a reader sees the old index, the new one, or none (and then takes the lock)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
