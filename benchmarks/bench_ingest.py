"""Document readers for PDF, HTML and DOCX: which library reads each best, and how fast.

Files are generated (tests/docmaker.py) from the bundled sample, so the true text is known exactly: per page
for PDFs, and for HTML which strings are boilerplate (navigation, cookie banner, sidebar, footer, script).
Quality is the word-sequence similarity (difflib ratio over lower-cased words) between what a reader returns
and the truth, per page for PDFs; for HTML also how many boilerplate strings leak into the text. Speed is the
best of three reads of a larger file of the same kind, in this process (imports excluded, measured apart).

Run: ``python benchmarks/bench_ingest.py [--quick]``; writes ``benchmarks/results/ingest[.quick].json``. The
candidates chatqa does not depend on are measured when installed (``pip install pymupdf pdfminer.six
'markitdown[pdf,docx]'``) and listed as not installed otherwise.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402

from tests import docmaker  # noqa: E402

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def similarity(truth: str, got: str) -> float:
    return difflib.SequenceMatcher(None, words(truth), words(got), autojunk=False).ratio()


# -- candidates: each returns a list of page texts (PDF) or one text ---------------------------------------
def pdf_pypdf(path: Path) -> list[str]:
    import pypdf

    return [p.extract_text() or "" for p in pypdf.PdfReader(path).pages]


def pdf_pymupdf(path: Path) -> list[str]:
    import pymupdf

    with pymupdf.open(path) as doc:
        return [page.get_text() for page in doc]


def pdf_pdfminer(path: Path) -> list[str]:
    from pdfminer.high_level import extract_text

    return extract_text(str(path)).split("\f")[:-1] or [""]


def pdf_markitdown(path: Path) -> list[str]:
    from markitdown import MarkItDown

    return [MarkItDown().convert(str(path)).text_content]  # one text: markitdown has no page split


def html_trafilatura(path: Path) -> str:
    import trafilatura

    return trafilatura.extract(path.read_text(encoding="utf-8"), include_comments=False, favor_recall=True) or ""


def html_markitdown(path: Path) -> str:
    from markitdown import MarkItDown

    return MarkItDown().convert(str(path)).text_content


def html_bs4_text(path: Path) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    for tag in soup(["script", "style"]):
        tag.decompose()
    return soup.get_text("\n")


def docx_python_docx(path: Path) -> str:
    import docx

    d = docx.Document(str(path))
    parts = []
    for block in d.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            parts.append("".join(t.text or "" for t in block.iter() if t.tag.endswith("}t")))
        elif tag == "tbl":
            for row in block.iter():
                if row.tag.endswith("}tr"):
                    cells = [c for c in row.iter() if c.tag.endswith("}tc")]
                    parts.append(
                        " ".join("".join(t.text or "" for t in c.iter() if t.tag.endswith("}t")) for c in cells)
                    )
    return "\n\n".join(p for p in parts if p.strip())


def docx_markitdown(path: Path) -> str:
    from markitdown import MarkItDown

    return MarkItDown().convert(str(path)).text_content


CANDIDATES: dict[str, dict[str, tuple[str, Callable[[Path], Any]]]] = {
    "pdf": {"pypdf": ("pypdf", pdf_pypdf), "pymupdf": ("pymupdf", pdf_pymupdf),
            "pdfminer.six": ("pdfminer", pdf_pdfminer), "markitdown": ("markitdown", pdf_markitdown)},
    "html": {"trafilatura": ("trafilatura", html_trafilatura), "markitdown": ("markitdown", html_markitdown),
             "bs4 get_text": ("bs4", html_bs4_text)},
    "docx": {"python-docx": ("docx", docx_python_docx), "markitdown": ("markitdown", docx_markitdown)},
}  # fmt: skip
LICENSES = {"pypdf": "BSD-3", "pymupdf": "AGPL-3.0", "pdfminer.six": "MIT", "markitdown": "MIT",
            "trafilatura": "Apache-2.0", "bs4 get_text": "MIT", "python-docx": "MIT"}  # fmt: skip


def best_of(fn: Callable[[], Any], n: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(n):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> int:
    quick = "--quick" in sys.argv
    big = 8 if quick else 60
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pdf_truth = docmaker.make_pdf(d / "q.pdf", pages=6)
        docmaker.make_pdf(d / "big.pdf", pages=big)
        docmaker.make_scanned_pdf(d / "scan.pdf")
        html_truth, boiler = docmaker.make_html(d / "q.html")
        docmaker.make_html(d / "big.html", n=big)
        docx_truth = docmaker.make_docx(d / "q.docx")
        docmaker.make_docx(d / "big.docx", n=big)
        for kind, cands in CANDIDATES.items():
            for name, (module, read) in cands.items():
                t0 = time.perf_counter()
                try:
                    importlib.import_module(module)
                except ImportError:
                    rows.append({"kind": kind, "reader": name, "license": LICENSES[name], "not_installed": True})
                    continue
                row: dict[str, Any] = {"kind": kind, "reader": name, "license": LICENSES[name],
                                       "import_s": round(time.perf_counter() - t0, 3)}  # fmt: skip
                got = read(d / f"q.{kind}")
                if kind == "pdf":
                    row["pages_found"] = len(got)
                    if len(got) == len(pdf_truth):
                        row["similarity"] = round(sum(map(similarity, pdf_truth, got)) / len(got), 4)
                    else:  # no page split: compare the whole text
                        row["similarity"] = round(similarity("\n\n".join(pdf_truth), "\n\n".join(got)), 4)
                    scan = read(d / "scan.pdf")
                    row["scanned_pdf_chars"] = sum(len(p.strip()) for p in scan)
                elif kind == "html":
                    row["similarity"] = round(similarity(html_truth, got), 4)
                    leaked = [b for b in boiler if re.search(rf"\b{re.escape(b.lower())}\b", got.lower())]
                    row["boilerplate_leaked"] = f"{len(leaked)}/{len(boiler)}"
                else:
                    row["similarity"] = round(similarity(docx_truth, got), 4)
                seconds, _ = best_of(lambda read=read, kind=kind: read(d / f"big.{kind}"))
                row["big_file"] = f"{big} pages" if kind == "pdf" else f"{big} paragraphs"
                row["read_s"] = round(seconds, 4)
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = C.machine_info()
    machine.pop("cwd", None)
    machine["command"] = "python benchmarks/bench_ingest.py" + (" --quick" if quick else "")
    out = {"benchmark": "ingest", "title": "Document readers: quality and speed", "quick": quick,
           "machine": machine, "rows": rows}  # fmt: skip
    path = C.RESULTS / ("ingest.quick.json" if quick else "ingest.json")
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(C.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
