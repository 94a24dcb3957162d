"""Reading documents: text and Markdown files, PDF, HTML and DOCX, folders of them, or standard input.

Decoding honours a byte-order mark (UTF-8, UTF-16, UTF-32), then tries strict UTF-8, then latin-1, which never
fails; the fallback is recorded on the document and said once on stderr, since a wrong guess garbles every
non-ASCII character the answer may quote. Binary files are refused rather than turned into noise, and so is
anything that is not a regular file: a FIFO would block forever, a device would never end.

Other formats go through a reader chosen by file suffix (:data:`READERS`, :func:`register_reader`); the
shipped ones (PDF, HTML, DOCX) live in :mod:`chatqa.ingest.formats`, chosen by measurement
(``benchmarks/bench_ingest.py``).
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import os
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chatqa.errors import InputError
from chatqa.notices import notice

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text", ".rst")

# Longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class DocumentTypeError(InputError, TypeError):
    """A document given as something chatqa cannot read (bytes, a number, None). Both an :class:`InputError`,
    so the CLI prints one line, and a ``TypeError``, which is what a library caller expects to catch."""


@dataclass(frozen=True)
class Document:
    name: str  # what citations show: the file name, or "stdin"
    text: str
    source: str | None = None  # absolute path when read from disk
    encoding: str = "utf-8"
    pages: tuple[int, ...] | None = None  # paged formats (PDF): the 1-based line on which each page starts

    def page_of(self, line: int) -> int | None:
        """The 1-based page that holds ``line``, for citations; None for unpaged documents."""
        if not self.pages:
            return None
        return max(1, bisect.bisect_right(self.pages, line))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @classmethod
    def from_text(cls, text: str, name: str = "text") -> Document:
        if not isinstance(text, str):
            raise DocumentTypeError(f"Document.from_text needs a str, not {type(text).__name__}")
        if not text.strip():
            raise InputError(f"{name}: document is empty")
        return cls(name=name, text=_normalise_newlines(text))


def printable(name: str) -> str:
    """A name safe to print on one line: control and separator characters (newline, tab, escape codes,
    U+2028) become backslash escapes, so a file named ``a\\nb.txt`` cannot split or forge a ``citations:``
    line. Other characters (accents, CJK) stay as they are."""
    out = []
    for ch in name:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in "\n\r\t":
            out.append(repr(ch)[1:-1])
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return "".join(out)


def decode(data: bytes, name: str) -> tuple[str, str]:
    for bom, codec in BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec), codec.removesuffix("-le").removesuffix("-be")
            except UnicodeDecodeError:
                raise InputError(f"{name}: starts with a {codec} byte-order mark but is not {codec} text") from None
    if b"\x00" in data[:8192]:
        raise InputError(f"{name}: looks like a binary file, not text (chatqa reads text, Markdown, PDF, HTML, DOCX)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _normalise_newlines(text: str) -> str:
    # Line ranges in citations must match what editors show, so CRLF and CR become LF once, here.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_regular(path: Path) -> None:
    """Refuse FIFOs, sockets and devices before opening them (opening a FIFO blocks until a writer comes)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InputError(f"{printable(str(path))}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{printable(str(path))}: not a regular file (a FIFO, socket or device); pass its content "
                         "on stdin with --doc - instead")  # fmt: skip


Reader = Callable[[Path, str], Document]  # (path, name shown in messages) -> Document
READERS: dict[str, Reader] = {}


def register_reader(suffixes: Sequence[str], reader: Reader) -> None:
    """Read files with these suffixes (lower case, with the dot) through ``reader``; folders include them."""
    for suffix in suffixes:
        READERS[suffix.lower()] = reader


def make_document(path: Path, text: str, encoding: str, pages: Sequence[str] | None = None) -> Document:
    """A document from a reader's text, or from its pages (joined by blank lines, each page's first line
    recorded so citations can name pages)."""
    if pages is not None:
        pages = [_normalise_newlines(p).strip("\n") for p in pages]
        starts, line = [], 1
        for p in pages:
            starts.append(line)
            line += p.count("\n") + 2  # the page's lines and the blank line between pages
        text = "\n\n".join(pages)
    text = _normalise_newlines(text)
    if not text.strip():
        raise InputError(f"{printable(str(path))}: document is empty")
    return Document(path.name, text, str(path.resolve()), encoding, tuple(starts) if pages is not None else None)


def read_document(path: Path) -> Document:
    _check_regular(path)
    shown = printable(str(path))
    _load_formats()
    reader = READERS.get(path.suffix.lower())
    if reader is not None:
        return reader(path, shown)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{shown}: cannot read ({exc.strerror or exc})") from None
    text, encoding = decode(data, shown)
    if not text.strip():
        raise InputError(f"{shown}: document is empty")
    if encoding == "latin-1":
        notice(f"{shown}: not valid UTF-8, read as latin-1 (save it as UTF-8 if characters look wrong)")
    return Document(path.name, _normalise_newlines(text), str(path.resolve()), encoding)


def read_sources(sources: Sequence[str]) -> list[Document]:
    """Expand CLI-style sources (files, folders, '-') into documents, in a stable order."""
    if not sources:
        raise InputError("no document given (use --doc PATH, a folder, or - for stdin)")
    docs: list[Document] = []
    for source in sources:
        if not isinstance(source, str):
            raise DocumentTypeError(f"a document path must be a str, not {type(source).__name__}")
        if not source.strip():  # Path("") is the working directory: never index it by accident
            raise InputError("empty path given as a document (name a file, a folder, or - for stdin)")
        if source == "-":
            text, encoding = decode(sys.stdin.buffer.read(), "stdin")
            if not text.strip():
                raise InputError("stdin: document is empty")
            docs.append(Document("stdin", _normalise_newlines(text), None, encoding))
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            _load_formats()
            known = (*TEXT_SUFFIXES, *READERS)
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in known)
            if not files:
                raise InputError(f"{printable(str(path))}: folder has no {', '.join(known)} files")
            docs.extend(read_document(p) for p in files)
        elif path.exists():
            docs.append(read_document(path))
        else:
            raise InputError(f"{printable(str(path))}: no such file or folder")
    return docs


DocLike = str | os.PathLike | Document


def load_documents(docs: Sequence[DocLike] | DocLike) -> list[Document]:
    """The library's entry: a path, a :class:`Document`, or a list of them. ``bytes`` are refused with a type
    error instead of being iterated as numbers (or, as ``str(b"...")``, read as a file name)."""
    if isinstance(docs, (str, os.PathLike, Document)):
        docs = [docs]
    if not isinstance(docs, (list, tuple)):
        raise DocumentTypeError(_type_message(docs))
    out: list[Document] = []
    for d in docs:
        if isinstance(d, Document):
            out.append(d)
        elif isinstance(d, (str, os.PathLike)):
            out.extend(read_sources([os.fspath(d)]))
        else:
            raise DocumentTypeError(_type_message(d))
    if not out:
        raise InputError("no document given")
    return out


def _type_message(value: object) -> str:
    hint = " (decode it and pass Document.from_text(text, name))" if isinstance(value, (bytes, bytearray)) else ""
    return f"a document must be a path, a Document, or a list of them, not {type(value).__name__}{hint}"


def _load_formats() -> None:
    """Register the shipped PDF/HTML/DOCX readers on first use (their libraries import only when a file of
    that kind is read)."""
    from chatqa.ingest import formats  # noqa: F401 - registers on import
