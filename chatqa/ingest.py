"""Reading documents: plain text and Markdown files, folders of them, or standard input.

Decoding is strict UTF-8 first (a BOM is dropped), then latin-1, which never fails; the fallback is recorded
on the document so callers can tell the user. Binary files are refused rather than turned into noise.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from chatqa.errors import InputError

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text", ".rst")


@dataclass(frozen=True)
class Document:
    name: str  # what citations show: the file name, or "stdin"
    text: str
    source: str | None = None  # absolute path when read from disk
    encoding: str = "utf-8"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @classmethod
    def from_text(cls, text: str, name: str = "text") -> Document:
        if not text.strip():
            raise InputError(f"{name}: document is empty")
        return cls(name=name, text=_normalise_newlines(text))


def decode(data: bytes, name: str) -> tuple[str, str]:
    if b"\x00" in data[:8192]:
        raise InputError(f"{name}: looks like a binary file, not text (chatqa reads .txt and .md)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _normalise_newlines(text: str) -> str:
    # Line ranges in citations must match what editors show, so CRLF and CR become LF once, here.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_document(path: Path) -> Document:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    text, encoding = decode(data, str(path))
    if not text.strip():
        raise InputError(f"{path}: document is empty")
    return Document(path.name, _normalise_newlines(text), str(path.resolve()), encoding)


def read_sources(sources: list[str]) -> list[Document]:
    """Expand CLI-style sources (files, folders, '-') into documents, in a stable order."""
    if not sources:
        raise InputError("no document given (use --doc PATH, a folder, or - for stdin)")
    docs: list[Document] = []
    for source in sources:
        if source == "-":
            text, encoding = decode(sys.stdin.buffer.read(), "stdin")
            if not text.strip():
                raise InputError("stdin: document is empty")
            docs.append(Document("stdin", _normalise_newlines(text), None, encoding))
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                raise InputError(f"{path}: folder has no .txt or .md files")
            docs.extend(read_document(p) for p in files)
        elif path.exists():
            docs.append(read_document(path))
        else:
            raise InputError(f"{path}: no such file or folder")
    return docs
