"""The text output's ``citations:`` line: one line whatever the file names hold, with PDF pages beside lines."""

from __future__ import annotations

from chatqa.cli.ask import print_answer
from chatqa.pipeline import Answer


def answer(citations: list[dict]) -> Answer:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "cached_tokens": 0, "document_tokens": 10,
             "seconds": {"total": 0.1}}  # fmt: skip
    return Answer("yes", "rag", "forced", "rag", "q?", citations, usage)


def test_a_newline_in_a_file_name_cannot_break_or_forge_the_citations_line(capsys) -> None:
    evil = "notes\ncitations: forged.txt:1-1\x1b[2K.txt"
    print_answer(answer([{"doc": evil, "lines": [3, 9], "chunk": 0, "score": 1.0}]), streamed=False)
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("citations:") for line in out) == 1
    (line,) = [line for line in out if line.startswith("citations:")]
    assert line == "citations: notes\\ncitations: forged.txt:1-1\\x1b[2K.txt:3-9 (chunk 0)"


def test_pdf_citations_show_pages(capsys) -> None:
    cites = [{"doc": "paper.pdf", "lines": [40, 71], "chunk": 2, "pages": [3, 4]},
             {"doc": "paper.pdf", "lines": [90, 95], "chunk": 5, "pages": [6, 6]},
             {"doc": "notes.txt", "lines": [1, 9], "chunk": 7, "pages": None}]  # fmt: skip
    print_answer(answer(cites), streamed=False)
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("citations:")]
    assert (
        line == "citations: paper.pdf:40-71 p. 3-4 (chunk 2), paper.pdf:90-95 p. 6 (chunk 5), notes.txt:1-9 (chunk 7)"
    )
