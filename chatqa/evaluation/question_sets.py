"""Question sets of our own over real documents: one JSONL row per question, scored by accepted-answer containment.

A question set is data a reviewer can check line by line: ``{id, doc, question, answers, answerable, position}``
(plus free fields such as ``evidence``). ``doc`` is a key into the suite YAML's ``docs`` map, whose values name a
file under the evaluation data folder (``data:gutenberg/pg11.txt``) or in this repository
(``repo:examples/harrow_canal.txt``), so books are read in place and never copied. ``answers`` lists accepted
strings, each of which occurs in the document; an empty list with ``answerable: false`` means the right answer is
to decline. ``position`` (beginning/middle/end, or anything a set needs, e.g. ``global``) says where the evidence
sits, so results can be split by it. The kind is generic: any suite with ``source: question_set`` uses it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatqa.evaluation.samples import DEFAULT_DATA_DIR, Sample, require_file

REPO = Path(__file__).resolve().parents[2]
FIELDS = ("id", "doc", "question", "answers")
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
    )
}  # fmt: skip
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PUNCT = re.compile(r"[^\w\s]|_")


def resolve_doc(ref: str, data_dir: str | Path | None) -> Path:
    """``data:<path>`` under the data folder, ``repo:<path>`` in this repository; nothing else is read."""
    kind, sep, rel = ref.partition(":")
    if not sep or kind not in ("data", "repo") or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ValueError(f"document reference {ref!r} must be data:<relative path> or repo:<relative path>")
    root = Path(data_dir or DEFAULT_DATA_DIR) if kind == "data" else REPO
    return require_file(root / rel, f"document {ref}")


def read_questions(path: Path) -> list[dict[str, Any]]:
    """Rows of a question-set JSONL, checked for the fields every row needs (one line names the bad row)."""
    rows = []
    for n, line in enumerate(require_file(path, "question set").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name} line {n}: not JSON ({exc.msg})") from None
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise ValueError(f"{path.name} line {n}: missing {', '.join(missing)}")
        row.setdefault("answerable", bool(row["answers"]))
        rows.append(row)
    return rows


def load_question_set(
    path: Path,
    docs: dict[str, str],
    data_dir: str | Path | None = None,
    limit: int | None = None,
    answerable: bool | None = None,
    positions: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> list[Sample]:
    """Samples for the questions whose ``doc`` is in ``docs`` (a suite may cover a subset of the books), at most
    ``limit`` per document, optionally only (un)answerable ones, some positions, or listed ids. Each sample's
    ``task`` is its document key, so reports break accuracy down per document."""
    texts: dict[str, str] = {}
    per_doc: dict[str, int] = {}
    out = []
    for row in read_questions(path):
        doc = row["doc"]
        if doc not in docs:
            continue
        if answerable is not None and bool(row["answerable"]) != answerable:
            continue
        if positions is not None and row.get("position") not in positions:
            continue
        if ids is not None and row["id"] not in ids:
            continue
        if limit is not None and per_doc.get(doc, 0) >= limit:
            continue
        per_doc[doc] = per_doc.get(doc, 0) + 1
        if doc not in texts:
            texts[doc] = resolve_doc(docs[doc], data_dir).read_text(encoding="utf-8")
        meta = {k: v for k, v in row.items() if k not in ("id", "question", "answers")}
        meta["source"] = docs[doc]
        out.append(Sample(id=row["id"], task=doc, context=texts[doc], question=row["question"],
                          answers=list(row["answers"]), meta=meta))  # fmt: skip
    return out


def normalize(text: str) -> str:
    """Lowercase, thousands separators dropped (2,683 = 2683), punctuation to spaces, a/an/the dropped, number
    words up to twenty as digits, so "eleven arches" contains "11" and "rabbit hole" contains "rabbit-hole"."""
    text = _PUNCT.sub(" ", _THOUSANDS.sub("", text.lower().replace("\u2019", "'")))
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in ("a", "an", "the")]
    return " ".join(words)


def declined(prediction: str) -> bool:
    """A decline by chatqa's own rule (the word "unanswerable" it asks for, and its variants) or ChatRAG's list."""
    from chatqa.evaluation.metrics import is_refusal
    from chatqa.routing import declined as routing_declined

    return routing_declined(prediction) or is_refusal(prediction)


def contains_answer(prediction: str, answers: Sequence[str] | str) -> float:
    """1.0 when a normalised accepted answer occurs as whole words in the normalised prediction; with no accepted
    answers (the question is not answerable from the document), 1.0 when the prediction declines."""
    golds = [answers] if isinstance(answers, str) else list(answers)
    if not golds:
        return float(declined(prediction))
    pred = f" {normalize(prediction)} "
    return float(any(f" {normalize(a)} " in pred for a in golds if normalize(a)))


def wilson_interval(hits: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: unlike the normal approximation it stays inside [0, 1] and is
    honest at the small n (10-100) these sets have."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
