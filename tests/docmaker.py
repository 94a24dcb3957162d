"""Real PDF, HTML and DOCX files built from the bundled sample text, with the text each should yield.

Generated rather than shipped: the tests and ``benchmarks/bench_ingest.py`` need files whose true text is
known exactly (per page for PDFs) and boilerplate that is known to be boilerplate (HTML navigation, footers).
Built with fpdf2 (PDF), python-docx (DOCX) and Pillow (the image of a scanned page).
"""

from __future__ import annotations

import html
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "harrow_canal.txt"

NAV = ["Homepage", "Archive", "Subscribe to our newsletter", "Cookie settings", "Privacy policy", "Advertise with us"]
FOOTER = "Copyright 2026 Vale Heritage Trust. All rights reserved. Registered charity number 1234567."


def paragraphs(n: int | None = None, max_chars: int = 900) -> list[str]:
    """The sample's paragraphs joined onto one line each, short enough that several fit on a page."""
    paras = [" ".join(p.split()) for p in SAMPLE.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    paras = [p for p in paras if len(p) <= max_chars]
    return paras[:n] if n else paras


def make_pdf(path: Path, pages: int = 6, per_page: int = 3) -> list[str]:
    """A text-layer PDF with a running header and a page-number footer; returns each page's body text."""
    from fpdf import FPDF

    paras = paragraphs()
    truth: list[str] = []
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    for page in range(pages):
        body = paras[(page * per_page) % len(paras) :][:per_page]
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 8, "The Harrow Vale Canal", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for p in body:
            pdf.multi_cell(0, 5.5, p, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        pdf.set_y(-15)
        pdf.set_font("Helvetica", "I", 9)
        pdf.cell(0, 8, f"Page {page + 1}", align="C")
        truth.append("\n\n".join(body))
    pdf.output(str(path))
    return truth


def make_scanned_pdf(path: Path, pages: int = 2) -> None:
    """Pages that are pictures of text, with no text layer: what a scanner without OCR produces."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    pdf = FPDF(format="A4")
    for page in range(pages):
        img = Image.new("L", (1240, 1754), 255)
        draw = ImageDraw.Draw(img)
        for i, p in enumerate(paragraphs(12)[page * 4 : page * 4 + 4]):
            draw.text((80, 100 + 300 * i), p[:90], fill=0)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pdf.add_page()
        pdf.image(buf, x=0, y=0, w=210)
    pdf.output(str(path))


def make_html(path: Path, n: int = 12) -> tuple[str, list[str]]:
    """An article page with navigation, a cookie banner, a sidebar, scripts, styles and a footer; returns the
    article's text and the boilerplate strings that should not be read as content."""
    body = paragraphs(n)
    boiler = [*NAV, FOOTER, "Related: ten best towpath walks", "var tracking = 'x9'"]
    items = "".join(f'<li><a href="/{i}">{html.escape(t)}</a></li>' for i, t in enumerate(NAV))
    article = "".join(f"<p>{html.escape(p)}</p>" for p in body)
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>The Harrow Vale Canal</title>
<style>body {{ font-family: serif; }} .ad {{ color: red; }}</style>
<script>var tracking = 'x9'; console.log(tracking);</script></head><body>
<div class="cookie-banner">We use cookies. <button>Cookie settings</button></div>
<header><nav><ul>{items}</ul></nav></header>
<main><article><h1>The Harrow Vale Canal</h1>{article}</article></main>
<aside class="sidebar"><h3>Related</h3><ul><li><a href="/walks">Related: ten best towpath walks</a></li></ul></aside>
<footer><p>{FOOTER}</p></footer>
<!-- build 42 --></body></html>"""
    path.write_text(page, encoding="utf-8")
    return "\n\n".join(["The Harrow Vale Canal", *body]), boiler


def make_docx(path: Path, n: int = 12) -> str:
    """A Word file with a title, headings, paragraphs, a bulleted list and a table; returns its text."""
    import docx

    d = docx.Document()
    parts = ["The Harrow Vale Canal"]
    d.add_heading("The Harrow Vale Canal", 0)
    for i, p in enumerate(paragraphs(n)):
        if i % 4 == 0:
            d.add_heading(f"Part {i // 4 + 1}", 1)
            parts.append(f"Part {i // 4 + 1}")
        d.add_paragraph(p)
        parts.append(p)
    for item in ("Harrowmouth sea lock", "Pennock basin"):
        d.add_paragraph(item, style="List Bullet")
        parts.append(item)
    table = d.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Lock", "Rise in feet"), ("Harrowmouth", "9"), ("Pennock", "7")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
        parts.append(f"{a} {b}")
    d.save(str(path))
    return "\n\n".join(parts)
