"""Index build speed: chatqa against a raw SentenceTransformer.encode and against a LangChain + FAISS pipeline.

Why these two references:
- The raw ``SentenceTransformer.encode`` of exactly the window texts chatqa embedded (same model folder, same
  batch size, same max_seq_length) is the floor for embedding those texts on this machine: anything chatqa
  adds on top (windowing, bookkeeping) shows up as a ratio below 1. Target: chatqa >= 0.9x raw throughput.
- The LangChain peer is what most people would write instead: RecursiveCharacterTextSplitter at the same 1200
  generator tokens (same Gemma tokenizer), HuggingFaceEmbeddings on the same MiniLM, a FAISS store saved to
  disk. It embeds each chunk once, truncated at 256 MiniLM tokens, so it reads about a fifth of the text
  chatqa reads: it is faster because it does less, and the table says how much less.

Each path runs in its own process (cold: imports and model loads included in its total, load shown apart).
Run: ``python benchmarks/bench_index.py [--quick]``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402 - the shared helpers sit beside this script

NAME = "index"
TITLE = "Index build: chatqa vs raw SentenceTransformer.encode vs LangChain + FAISS"
SCRIPT = Path(__file__).resolve()
QUICK_TOKENS = 6000  # --quick: the first 6K generator tokens of Alice, cut at a paragraph


# -- children -----------------------------------------------------------------------------------------------
def child_chatqa(spec: dict[str, Any]) -> dict[str, Any]:
    """chatqa's index build in a fresh home, then (untimed) the window texts it embedded, for the raw path."""
    import numpy as np

    from chatqa import ChatQA
    from chatqa.ingest import read_sources

    qa = ChatQA.from_profile("default", home=spec["home"])
    docs = read_sources([spec["doc"]])
    start = time.perf_counter()
    # Load the two models first: the same work as a cold build, but open_index loads the retriever inside
    # its embedding stage (stats["embed_s"]), which would charge the model load to embedding throughput.
    qa.tokenizer, qa.embedder  # noqa: B018 - properties that load the models
    load = time.perf_counter() - start
    index = qa.index(docs)
    total = time.perf_counter() - start
    stats = dict(index.stats)

    emb = qa.embedder
    prefix = emb.config.passage_prefix
    windows = [prefix + w for c in index.chunks for w in emb.windows(c.text)]
    lengths = [len(ids) for ids in emb.tokenizer(windows, add_special_tokens=True, verbose=False)["input_ids"]]
    read = sum(min(n, emb.model.max_seq_length) for n in lengths)
    Path(spec["windows_out"]).write_text(json.dumps(windows), encoding="utf-8")
    vectors = index.faiss.reconstruct_n(0, index.faiss.ntotal) if hasattr(index.faiss, "reconstruct_n") else None
    if vectors is not None:
        np.save(spec["vectors_out"], vectors)
    return {
        "total_s": total,
        "load_s": load,
        "chunk_s": stats["chunk_s"],
        "embed_s": stats["embed_s"],
        "faiss_bm25_s": stats["index_s"],
        "write_s": max(0.0, total - load - stats["chunk_s"] - stats["embed_s"] - stats["index_s"]),
        "tokens": int(stats["tokens"]),
        "chunks": int(stats["n_chunks"]),
        "vectors": int(stats["n_vectors"]),
        "windows": len(windows),
        "minilm_tokens": read,
        "batch_size": emb.config.batch_size,
        "max_seq_length": int(emb.model.max_seq_length),
        "faiss": index.manifest.get("faiss"),
    }


def child_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """``SentenceTransformer.encode`` of the very texts chatqa embedded, as a user would call it."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from chatqa.weights import resolve

    windows = json.loads(Path(spec["windows"]).read_text(encoding="utf-8"))
    start = time.perf_counter()
    model = SentenceTransformer(resolve(spec["model"]), device="cpu", local_files_only=True)
    model.max_seq_length = spec["max_seq_length"]
    loaded = time.perf_counter()
    vectors = model.encode(windows, batch_size=spec["batch_size"], normalize_embeddings=True, convert_to_numpy=True)
    end = time.perf_counter()
    diff = None
    if Path(spec["vectors"]).is_file():
        ref = np.load(spec["vectors"])
        if ref.shape == vectors.shape:
            diff = float(np.abs(ref - vectors).max())
    return {"load_s": loaded - start, "encode_s": end - loaded, "windows": len(windows), "max_abs_diff": diff}


def child_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """The LangChain pipeline most people would write: split, embed, FAISS, save."""
    import llama_cpp

    from chatqa.weights import resolve

    try:
        from langchain_community.vectorstores import FAISS
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        try:
            from langchain_huggingface import HuggingFaceEmbeddings

            embeddings_from = "langchain_huggingface.HuggingFaceEmbeddings"
        except ImportError:
            from langchain_community.embeddings import HuggingFaceEmbeddings

            embeddings_from = "langchain_community.embeddings.HuggingFaceEmbeddings"
    except ImportError as exc:
        return {"unavailable": f"{exc} (pip install langchain-community langchain-huggingface)"}

    text = Path(spec["doc"]).read_text(encoding="utf-8")
    start = time.perf_counter()
    vocab = llama_cpp.Llama(model_path=resolve(spec["generator"]), vocab_only=True, verbose=False)

    def count(s: str) -> int:
        return len(vocab.tokenize(s.encode("utf-8"), add_bos=False, special=False))

    splitter = RecursiveCharacterTextSplitter(chunk_size=spec["chunk_tokens"], chunk_overlap=0, length_function=count)
    embeddings = HuggingFaceEmbeddings(
        model_name=resolve(spec["model"]),
        model_kwargs={"device": "cpu", "local_files_only": True},
        encode_kwargs={"batch_size": spec["batch_size"], "normalize_embeddings": True},
    )
    loaded = time.perf_counter()
    chunks = splitter.split_text(text)
    split = time.perf_counter()
    vectors = embeddings.embed_documents(chunks)
    embedded = time.perf_counter()
    store = FAISS.from_embeddings(list(zip(chunks, vectors, strict=True)), embeddings)
    store.save_local(spec["home"])
    end = time.perf_counter()

    tok = embeddings._client.tokenizer
    limit = int(embeddings._client.max_seq_length)
    lengths = [len(ids) for ids in tok(chunks, add_special_tokens=True, verbose=False)["input_ids"]]
    return {
        "embeddings": embeddings_from,
        "total_s": end - start,
        "load_s": loaded - start,
        "split_s": split - loaded,
        "embed_s": embedded - split,
        "faiss_save_s": end - embedded,
        "chunks": len(chunks),
        "max_chunk_tokens": max(count(c) for c in chunks),
        "minilm_tokens": sum(min(n, limit) for n in lengths),
        "minilm_tokens_in_chunks": sum(lengths),
    }


HANDLERS = {"chatqa": child_chatqa, "raw": child_raw, "peer": child_peer}


# -- parent -------------------------------------------------------------------------------------------------
def measure(doc: Path, label: str, tmp: Path) -> dict[str, Any]:
    """The three paths on one document, each in its own process and its own fresh temporary folder."""
    from chatqa.config import load_profile

    cfg = load_profile("default")
    work = tmp / label
    work.mkdir()
    windows, vectors = work / "windows.json", work / "vectors.npy"
    C.log(f"{label}: chatqa index build")
    mine = C.run_child(
        SCRIPT,
        "chatqa",
        {"doc": str(doc), "home": str(work / "home"), "windows_out": str(windows), "vectors_out": str(vectors)},
    )
    C.log(f"{label}: raw SentenceTransformer.encode of the same {mine['windows']} windows")
    raw = C.run_child(
        SCRIPT,
        "raw",
        {
            "windows": str(windows),
            "vectors": str(vectors),
            "model": cfg.retriever.model,
            "batch_size": mine["batch_size"],
            "max_seq_length": mine["max_seq_length"],
        },
    )
    C.log(f"{label}: LangChain + FAISS peer")
    try:
        peer = C.run_child(
            SCRIPT,
            "peer",
            {
                "doc": str(doc),
                "home": str(work / "peer"),
                "generator": cfg.generator.model,
                "model": cfg.retriever.model,
                "chunk_tokens": cfg.chunking.chunk_tokens,
                "batch_size": cfg.retriever.batch_size,
            },
        )
    except C.ChildError as exc:
        peer = {"unavailable": str(exc).splitlines()[-1]}
    shutil.rmtree(work, ignore_errors=True)
    return {"doc": label, "chatqa": mine, "raw": raw, "peer": peer}


def summarise(runs: list[dict[str, Any]], quick: bool) -> dict[str, Any]:
    rows, peer_rows, targets, notes = [], [], [], []
    for r in runs:
        m, raw, peer = r["chatqa"], r["raw"], r["peer"]
        tokens = m["tokens"]
        mine_tps = m["minilm_tokens"] / m["embed_s"]
        raw_tps = m["minilm_tokens"] / raw["encode_s"]
        ratio = mine_tps / raw_tps
        rows.append(
            [
                r["doc"],
                tokens,
                m["chunks"],
                m["windows"],
                m["total_s"],
                m["load_s"],
                m["chunk_s"],
                m["embed_s"],
                tokens / m["total_s"],
                mine_tps,
                m["peak_rss_mb"],
                raw["encode_s"],
                raw_tps,
                raw["peak_rss_mb"],
                ratio,
            ]
        )
        diff = raw.get("max_abs_diff")
        same = f"vectors match raw (max |diff| {diff:.1e})" if diff is not None else "vectors not compared"
        targets.append(
            C.target(
                NAME,
                f"{r['doc']}: chatqa embed throughput vs raw encode",
                ratio,
                ">=",
                0.9,
                f"{mine_tps:,.0f} vs {raw_tps:,.0f} MiniLM tok/s on the same {m['windows']} windows; {same}",
            )
        )
        if "unavailable" in peer:
            peer_rows.append([r["doc"], tokens, *["-"] * 8, f"unavailable: {peer['unavailable']}"])
            continue
        read_share = peer["minilm_tokens"] / m["minilm_tokens"]
        peer_rows.append(
            [
                r["doc"],
                tokens,
                peer["chunks"],
                peer["total_s"],
                peer["load_s"],
                peer["split_s"],
                peer["embed_s"],
                tokens / peer["total_s"],
                peer["peak_rss_mb"],
                m["total_s"] / peer["total_s"],
                f"{read_share:.0%} of chatqa's MiniLM tokens",
            ]
        )
    peers = [r["peer"] for r in runs if "unavailable" not in r["peer"]]
    notes.append(
        "chatqa embeds every 1200-token chunk as overlapping windows of <= 254 MiniLM tokens (stride 0.75), so "
        "all of the text is read (plus ~25% overlap); the LangChain peer embeds each chunk once, truncated at "
        "256 MiniLM tokens, so it reads far less of the document (last column) and its vectors miss the rest."
    )
    if peers:
        notes.append(f"peer embeddings class: {peers[0]['embeddings']}; FAISS store from langchain_community.")
    else:
        notes.append("LangChain peer could not run (see table): pip install langchain-community langchain-huggingface")
    notes.append(
        "Totals are cold: they include model loads (shown apart). tokens/s counts generator (Gemma) tokens of "
        "the document over the total; embed tok/s counts MiniLM tokens over the embedding stage only."
    )
    if quick:
        notes.append(f"--quick: only the first {QUICK_TOKENS:,} generator tokens of pg11; numbers are a smoke test.")
    return {
        "runs": runs,
        "tables": [
            {
                "caption": "chatqa build vs raw `SentenceTransformer.encode` of the same windows (seconds, MB):",
                "columns": [
                    "doc",
                    "gen tokens",
                    "chunks",
                    "windows",
                    "total s",
                    "load s",
                    "chunk s",
                    "embed s",
                    "gen tok/s",
                    "embed tok/s",
                    "peak MB",
                    "raw encode s",
                    "raw tok/s",
                    "raw peak MB",
                    "chatqa/raw",
                ],
                "rows": rows,
            },
            {
                "caption": "LangChain + FAISS peer (same MiniLM, 1200 Gemma tokens per chunk, truncated at 256):",
                "columns": [
                    "doc",
                    "gen tokens",
                    "chunks",
                    "total s",
                    "load s",
                    "split s",
                    "embed s",
                    "gen tok/s",
                    "peak MB",
                    "chatqa total / peer total",
                    "text read",
                ],
                "rows": peer_rows,
            },
        ],
        "targets": targets,
        "notes": notes,
    }


def measure_all(args: Any, tmp: Path) -> dict[str, Any]:
    if args.quick:
        doc = tmp / "pg11-6k.txt"
        doc.write_text(C.cut_paragraphs(C.novel("pg11").read_text(encoding="utf-8"), QUICK_TOKENS, C.gemma_count()))
        docs = [(doc, "pg11-6k")]
    else:
        docs = [(C.novel(n), n) for n in C.NOVELS]
    return summarise([measure(doc, label, tmp) for doc, label in docs], args.quick)


def main(argv: list[str] | None = None) -> int:
    return C.main(__doc__, NAME, TITLE, HANDLERS, measure_all, argv)


if __name__ == "__main__":
    raise SystemExit(main())
