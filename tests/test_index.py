"""Index persistence: reuse when nothing changed, rebuild when anything did, never a half-written index."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatqa.config import Config
from chatqa.errors import InputError
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


# -- issue 11, item 3: verified on open, rebuilt with one notice, usable read-only, no stale temp folders -------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\xff\xfe garbage \x00" * (1 + path.stat().st_size // 13))


def _edit_chunk_text(path: Path) -> None:
    """Same length, other words: only a checksum of the texts tells (the issue's fake-citation probe)."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("lighthouse", "LIGHTHOUSE", 1), encoding="utf-8")


DAMAGE = {
    "truncated faiss": ("vectors.faiss", _truncate),
    "garbage bm25": ("bm25/vocab.index.json", _garbage),
    "garbage bm25 params": ("bm25/params.index.json", _garbage),
    "edited chunk text": ("chunks.jsonl", _edit_chunk_text),
    "missing owners": ("owners.npy", lambda p: p.unlink()),
    "garbage manifest": ("manifest.json", _garbage),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_is_rebuilt_with_one_notice(qa, doc: Path, tmp_path: Path, capsys, damage: str) -> None:
    home = tmp_path / "idx"
    first = build(qa, doc, home)
    name, hurt = DAMAGE[damage]
    hurt(first.path / name)
    capsys.readouterr()
    again = build(qa, doc, home)
    err = capsys.readouterr().err
    assert again.built, f"{damage}: a damaged index was reused"
    assert "LIGHTHOUSE" not in "".join(c.text for c in again.chunks)
    assert err.count("\n") == 1 and "rebuilding" in err and first.path.name in err, err
    assert not build(qa, doc, home).built  # the rebuilt index verifies


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` really read-only, also for root (who ignores permission bits): a read-only bind mount."""
    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield
        finally:
            for p in [path, *path.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
        return
    subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_home_with_an_up_to_date_index_is_usable(qa, doc: Path, tmp_path: Path) -> None:
    home = tmp_path / "idx"
    first = build(qa, doc, home)

    def no_embedder():
        raise AssertionError("a reused index must not load the retriever")

    with read_only(home):
        with pytest.raises(OSError):
            (home / "probe").write_text("x")  # the home really is read-only
        again = open_index(read_sources([str(doc)]), Config(), qa.tokenizer, no_embedder, home=home)
        assert not again.built and again.path == first.path and len(again.chunks) == len(first.chunks)
    (first.path / "vectors.faiss").write_bytes(b"junk")
    with read_only(home), pytest.raises(InputError, match="read-only") as err:
        open_index(read_sources([str(doc)]), Config(), qa.tokenizer, no_embedder, home=home)
    assert "\n" not in str(err.value)


def test_temp_folders_of_a_killed_build_are_removed_by_the_next_build(qa, doc: Path, tmp_path: Path) -> None:
    home = tmp_path / "idx"
    first = build(qa, doc, home)
    key = first.path.name
    for stale in (f".tmp-{key}-k1ll3d", ".tmp-0123456789abcdef0123-x", f".old-{key}-4242"):
        (home / stale).mkdir()
        (home / stale / "vectors.faiss").write_bytes(b"half written")
    doc.write_text(TEXT + "\n\nOne more paragraph.", encoding="utf-8")
    assert build(qa, doc, home).built
    assert sorted(p.name for p in home.iterdir() if not p.name.endswith(".lock")) == [key]


def test_the_same_text_under_another_name_reuses_the_index_and_cites_the_new_name(qa, tmp_path: Path) -> None:
    """An eval names a book after each sample: the disk index must not be rebuilt for a new name (it was, once
    per process and book), and the answer must cite the name it was given, not the one the index was built with."""
    from chatqa import ChatQA
    from chatqa.ingest import Document

    config = qa.config.replace(home=str(tmp_path / "h"))
    home = config.index_home
    first = open_index([Document("alpha", TEXT)], config, qa.tokenizer, lambda: qa.embedder, home=home)
    assert first.built and first.chunks[0].doc_name == "alpha"
    again = open_index([Document("beta", TEXT)], config, qa.tokenizer, lambda: qa.embedder, home=home)
    assert not again.built and again.path == first.path

    fresh = ChatQA(config, generator=qa.generator, tokenizer=qa.tokenizer, embedder=qa.embedder)
    answer = fresh.ask("How many gulls in paragraph 12?", docs=[Document("gamma", TEXT)], mode="rag",
                       max_new_tokens=8)  # fmt: skip
    assert answer.citations and {c["doc"] for c in answer.citations} == {"gamma"}
    assert [p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")] == [first.path]
