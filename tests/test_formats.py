"""PDF, HTML and DOCX documents, read from real files built here (tests/docmaker.py) with known text."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from chatqa.chunking import chunk_documents
from chatqa.errors import InputError
from chatqa.ingest import read_sources
from tests import docmaker


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, words(a), words(b), autojunk=False).ratio()


def test_pdf_text_layer_is_read_page_by_page(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    truth = docmaker.make_pdf(path, pages=5)
    (doc,) = read_sources([str(path)])
    assert doc.encoding == "pdf" and doc.pages is not None and len(doc.pages) == 5
    assert "%PDF" not in doc.text and "endobj" not in doc.text
    assert similarity("\n\n".join(truth), doc.text) > 0.97
    lines = doc.text.split("\n")
    for page, body in enumerate(truth, start=1):
        first_words = " ".join(body.split()[:6])
        line = next(i for i, text in enumerate(lines, start=1) if " ".join(text.split()).startswith(first_words))
        assert doc.page_of(line) == page


def test_pdf_chunks_cite_pages_beside_lines(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    docmaker.make_pdf(path, pages=6)
    docs = read_sources([str(path)])
    chunks = chunk_documents(docs, lambda s: len(s.split()), chunk_tokens=150)  # pure logic: a word counter
    assert len(chunks) > 3
    assert chunks[0].pages[0] == 1 and chunks[-1].pages[1] == 6
    for c in chunks:
        assert docs[0].page_of(c.line_start) == c.pages[0] <= c.pages[1] == docs[0].page_of(c.line_end)
    assert re.fullmatch(r"report\.pdf:\d+-\d+ \(p\. \d+(-\d+)?\)", chunks[-1].citation)
    plain = chunk_documents(read_sources([str(docmaker.SAMPLE)]), lambda s: len(s.split()), chunk_tokens=300)
    assert plain[0].pages is None and "p." not in plain[0].citation


def test_a_scanned_pdf_without_a_text_layer_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    docmaker.make_scanned_pdf(path)
    with pytest.raises(InputError, match="no text layer") as err:
        read_sources([str(path)])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("suffix", "content"), [(".pdf", b"%PDF-1.7\n garbage"), (".docx", b"PK\x03\x04 not a zip")])
def test_broken_files_are_one_line_errors(tmp_path: Path, suffix: str, content: bytes) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(content)
    with pytest.raises(InputError, match="cannot read") as err:
        read_sources([str(path)])
    assert "\n" not in str(err.value)


def test_html_main_text_without_markup_or_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "article.html"
    truth, boilerplate = docmaker.make_html(path)
    (doc,) = read_sources([str(path)])
    assert similarity(truth, doc.text) > 0.97
    assert "<p>" not in doc.text and "tracking" not in doc.text
    leaked = [b for b in boilerplate if b.lower() in doc.text.lower()]
    assert leaked == []


def test_docx_paragraphs_lists_and_tables_in_order(tmp_path: Path) -> None:
    path = tmp_path / "manual.docx"
    truth = docmaker.make_docx(path)
    (doc,) = read_sources([str(path)])
    assert similarity(truth, doc.text) > 0.99
    assert "Harrowmouth | 9" in doc.text and doc.text.index("Part 1") < doc.text.index("Part 2")


def test_a_folder_reads_every_supported_kind(tmp_path: Path) -> None:
    docmaker.make_pdf(tmp_path / "a.pdf", pages=2)
    docmaker.make_html(tmp_path / "b.html")
    docmaker.make_docx(tmp_path / "c.docx")
    (tmp_path / "d.txt").write_text("plain text")
    (tmp_path / "e.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    assert [d.name for d in read_sources([str(tmp_path)])] == ["a.pdf", "b.html", "c.docx", "d.txt"]
