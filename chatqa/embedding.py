"""Dense embeddings for chunks and queries, with sentence-transformers.

A retriever reads a limited number of tokens (256 word pieces for the default MiniLM), far less than a
1200-token chunk. Each chunk is therefore embedded as overlapping windows that cover all of it. With
``pooling: max`` (the default) every window is indexed and a chunk scores as its best window (MaxP): a single
planted fact is not diluted by the other 1000 tokens around it, as it is when window vectors are averaged
(``pooling: mean``, one vector per chunk, kept for comparison and for long-window retrievers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chatqa.config import RetrieverConfig
from chatqa.errors import ModelLoadError
from chatqa.weights import offline, resolve


class Embedder:
    def __init__(self, config: RetrieverConfig) -> None:
        offline()
        from sentence_transformers import SentenceTransformer

        self.config = config
        path = resolve(config.model)
        try:
            self.model = SentenceTransformer(path, device=config.device or "cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any loader failure is the same user problem
            raise ModelLoadError(f"cannot load retriever '{config.model}' from local files: {exc}") from None
        if config.max_seq_tokens:
            self.model.max_seq_length = config.max_seq_tokens
        self.tokenizer = self.model.tokenizer
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim())
        prefix = len(self.tokenizer(config.passage_prefix, add_special_tokens=False)["input_ids"])
        # room for the passage prefix and the [CLS]/[SEP]-style specials
        self.window = max(16, int(self.model.max_seq_length) - prefix - 2)

    @property
    def id(self) -> str:
        c = self.config
        return f"{c.model}|{self.dim}|win{self.window}|stride{c.window_stride}|{c.pooling}|{c.passage_prefix!r}"

    def windows(self, text: str) -> list[str]:
        """Overlapping windows of at most ``self.window`` retriever tokens that together cover ``text``.

        Windows start and end on word boundaries: a cut inside a word would re-tokenize differently (and
        longer) than the slice of tokens it came from, and the model would silently truncate it."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        n = len(offsets)
        if n <= self.window:
            return [text]
        word = [i == 0 or offsets[i][0] == 0 or text[offsets[i][0] - 1].isspace() for i in range(n)] + [True]
        size = self.window - 4  # margin for tokenizers that merge differently across the new edges
        step = max(1, int(size * self.config.window_stride))
        out, lo = [], 0
        while lo < n:
            hi = min(lo + size, n)
            while hi < n and hi > lo + 1 and not word[hi]:
                hi -= 1
            out.append(text[offsets[lo][0] : offsets[hi - 1][1]])
            if hi == n:
                break
            nxt = min(lo + step, hi)
            while nxt > lo + 1 and not word[nxt]:
                nxt -= 1
            lo = nxt
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One call for all texts: sentence-transformers sorts them by length into batches, and the vectors
        depend (in their last bits) on that batching. Its own "Batches" bar never shows: progress is chatqa's."""
        vectors = self.model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_chunks(self, texts: Sequence[str], show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Vectors to index and, for each, the chunk it belongs to (one row per window, or per chunk)."""
        prefix = self.config.passage_prefix
        windows, owners = [], []
        for i, text in enumerate(texts):
            for w in self.windows(text):
                windows.append(prefix + w)
                owners.append(i)
        if show_progress:
            from chatqa.progress import stage

            stage(f"indexing: embedding {len(windows):,} windows of {len(texts):,} chunks")
        vectors = self.encode(windows)
        owner = np.asarray(owners, dtype=np.int64)
        if self.config.pooling == "mean":
            sums = np.zeros((len(texts), self.dim), dtype=np.float32)
            np.add.at(sums, owner, vectors)
            sums /= np.linalg.norm(sums, axis=1, keepdims=True).clip(min=1e-12)
            return sums, np.arange(len(texts), dtype=np.int64)
        return vectors, owner

    def embed_query(self, query: str) -> np.ndarray:
        return self.encode([self.config.query_prefix + query])[0]
