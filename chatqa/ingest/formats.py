"""PDF, HTML and DOCX readers, chosen by measurement (``benchmarks/bench_ingest.py``, results in
``benchmarks/results/ingest.json``):

- PDF: pypdf. Text-layer quality equal to PyMuPDF and pdfminer.six on the generated files, page by page; fast
  enough (milliseconds a page); pure Python under a BSD licence, where PyMuPDF is AGPL. A PDF without a text
  layer (a scan) is refused with the reason, not indexed as nothing.
- HTML: trafilatura. The only candidate that keeps the article and drops navigation, cookie banners, sidebars
  and footers (markitdown and BeautifulSoup's ``get_text`` keep them all, and they would be retrieved and
  cited as content). Its plain ``html2txt`` is the fallback for pages it finds no article in.
- DOCX: python-docx, reading paragraphs and tables in body order: the same text as markitdown, 80x faster.
"""

from __future__ import annotations

from pathlib import Path

from chatqa.errors import InputError
from chatqa.ingest import Document, make_document, register_reader


def _bytes(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{shown}: cannot read ({exc.strerror or exc})") from None


def read_pdf(path: Path, shown: str) -> Document:
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and reader.decrypt("") == 0:
            raise InputError(f"{shown}: the PDF is encrypted; decrypt it first (e.g. qpdf --decrypt)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, OSError) as exc:
        raise InputError(f"{shown}: cannot read this PDF ({type(exc).__name__}: {exc})") from None
    if not pages:
        raise InputError(f"{shown}: the PDF has no pages")
    if not any(p.strip() for p in pages):
        raise InputError(f"{shown}: the PDF has no text layer (a scan?); run OCR first (e.g. ocrmypdf) and pass "
                         "the result")  # fmt: skip
    return make_document(path, "", "pdf", pages)


def read_html(path: Path, shown: str) -> Document:
    import trafilatura

    data = _bytes(path, shown)
    text = trafilatura.extract(data, favor_recall=True, include_comments=False, include_tables=True)
    if not text or not text.strip():  # no article found: all visible text rather than nothing
        text = trafilatura.html2txt(data)
    if not text or not text.strip():
        raise InputError(f"{shown}: no text found in this HTML page")
    return make_document(path, text, "html")


def read_docx(path: Path, shown: str) -> Document:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        body = docx.Document(str(path)).element.body
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InputError(f"{shown}: cannot read this DOCX file ({type(exc).__name__})") from None

    def text_of(element: object) -> str:
        return "".join(t.text or "" for t in element.iter() if t.tag.endswith("}t"))  # type: ignore[attr-defined]

    parts = []
    for block in body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            parts.append(text_of(block))
        elif tag == "tbl":  # one line per row, cells separated by " | "
            for row in (r for r in block.iter() if r.tag.endswith("}tr")):
                parts.append(" | ".join(text_of(c) for c in row.iter() if c.tag.endswith("}tc")))
    return make_document(path, "\n\n".join(p for p in parts if p.strip()), "docx")


register_reader([".pdf"], read_pdf)
register_reader([".html", ".htm", ".xhtml"], read_html)
register_reader([".docx"], read_docx)
