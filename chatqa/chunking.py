"""Token-exact chunking in the generator's tokenizer.

ChatQA 2's 1200-token chunks are generator tokens: what matters is how much of the generator's window k
chunks take. Splitting prefers paragraph, then line, then sentence boundaries (langchain's recursive
splitter); every chunk is then counted exactly and re-split if the splitter's additive estimate was over.
Each chunk keeps its character span and 1-based line range so answers can cite the source.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from chatqa.ingest import Document

SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    id: int  # position in the document set: sorting by id is document order (OP-RAG)
    doc: int  # index of the document in the set
    doc_name: str
    start: int  # character span [start, end) in the document text
    end: int
    line_start: int  # 1-based, inclusive
    line_end: int
    n_tokens: int
    text: str
    pages: tuple[int, int] | None = None  # first and last page (1-based) for paged documents (PDF)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def citation(self) -> str:
        where = f"{self.doc_name}:{self.line_start}-{self.line_end}"
        if self.pages is None:
            return where
        first, last = self.pages
        return f"{where} (p. {first})" if first == last else f"{where} (p. {first}-{last})"

    @classmethod
    def from_dict(cls, data: dict) -> Chunk:
        pages = data.get("pages")
        return cls(**{**data, "pages": tuple(pages) if pages is not None else None})


def split_text(text: str, count: Callable[[str], int], chunk_tokens: int, overlap_tokens: int = 0) -> list[str]:
    if chunk_tokens <= 0 or not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError("need chunk_tokens > 0 and 0 <= overlap_tokens < chunk_tokens")
    from langchain_text_splitters import RecursiveCharacterTextSplitter  # 0.5 s of imports: only when chunking

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=count,
        separators=SEPARATORS,
        keep_separator="end",
        strip_whitespace=False,
    )
    pieces: list[str] = []
    for piece in splitter.split_text(text):
        if count(piece) <= chunk_tokens:
            pieces.append(piece)
        else:  # the splitter sums piece counts; real counts can be higher at joins, so split again
            pieces.extend(split_text(piece, count, max(chunk_tokens * 9 // 10, 1), 0))
    return pieces


def memo_count(count: Callable[[str], int]) -> Callable[[str], int]:
    """``count`` remembering its answers. The recursive splitter counts every split when it splits and again
    when it merges, and each finished chunk is counted once more for its size: about 5x the text. With the
    memo each piece is tokenized once, and a 5 MB document costs about two tokenizations of its text, in pieces
    of at most a few chunks (never the whole text at once, which grows faster than linearly)."""
    known: dict[str, int] = {}

    def counted(text: str) -> int:
        n = known.get(text)
        if n is None:
            n = known[text] = count(text)
        return n

    return counted


def chunk_documents(
    docs: Sequence[Document], count: Callable[[str], int], chunk_tokens: int = 1200, overlap_tokens: int = 0
) -> list[Chunk]:
    chunks: list[Chunk] = []
    count = memo_count(count)
    for d, doc in enumerate(docs):
        newlines = [i for i, ch in enumerate(doc.text) if ch == "\n"]
        cursor = 0
        for piece in split_text(doc.text, count, chunk_tokens, overlap_tokens):
            if not piece.strip():
                continue
            # Pieces are substrings in order; with overlap the next one starts before the previous end.
            start = doc.text.find(piece, max(0, cursor - len(piece)))
            if start < 0:
                start = doc.text.find(piece)
            end = start + len(piece)
            cursor = end
            # Citations show the lines with text, not the blank lines the separator kept.
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            first, last = start + lead, max(start + lead, end - trail - 1)
            line_start = bisect.bisect_right(newlines, first - 1) + 1
            line_end = bisect.bisect_right(newlines, last - 1) + 1
            pages = (doc.page_of(line_start), doc.page_of(line_end)) if doc.pages else None
            chunks.append(
                Chunk(
                    id=len(chunks),
                    doc=d,
                    doc_name=doc.name,
                    start=start,
                    end=end,
                    line_start=line_start,
                    line_end=line_end,
                    n_tokens=count(piece),
                    text=piece,
                    pages=pages,  # type: ignore[arg-type]
                )
            )
    return chunks
