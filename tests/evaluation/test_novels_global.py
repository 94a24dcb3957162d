"""The global-question set (eval/suites/novels-global): checked against the books themselves.

Reads ../shared/data (the novels); skips when it is absent, and fails under CI=true, where it must be present.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from chatqa.evaluation import suites as st
from chatqa.evaluation.question_sets import normalize, resolve_doc
from chatqa.evaluation.samples import DEFAULT_DATA_DIR
from chatqa.routing import is_global

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "eval" / "suites" / "novels-global.yaml"
ROWS = [json.loads(line) for line in (ROOT / "eval" / "suites" / "novels-global.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def books() -> dict[str, str]:
    if not (DEFAULT_DATA_DIR / "gutenberg").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data missing at {DEFAULT_DATA_DIR} (CI clones ../shared beside the repo)")
        pytest.skip("shared data not found beside the repo")
    docs = st.load_suite(str(SUITE)).args["docs"]
    return {key: f" {normalize(resolve_doc(ref, None).read_text(encoding='utf-8'))} " for key, ref in docs.items()}


def test_at_least_thirty_global_questions_over_the_four_books() -> None:
    assert len(ROWS) >= 30 and len({r["id"] for r in ROWS}) == len(ROWS)
    per_book = Counter(r["doc"] for r in ROWS)
    assert set(per_book) == {"alice", "pride", "sherlock", "moby"} and min(per_book.values()) >= 7
    assert all(r["answerable"] and r["answers"] and r["position"] == "global" and r["evidence"] for r in ROWS)


def test_every_accepted_answer_occurs_in_its_book(books: dict[str, str]) -> None:
    missing = [(r["id"], a) for r in ROWS for a in r["answers"] if f" {normalize(a)} " not in books[r["doc"]]]
    assert missing == []


def test_no_question_gives_its_own_answer_away() -> None:
    """An answer that only repeats the question must not score: no accepted answer is inside its question."""
    leaks = [(r["id"], a) for r in ROWS for a in r["answers"] if f" {normalize(a)} " in f" {normalize(r['question'])} "]
    assert leaks == []


def test_the_suite_loads_every_row_with_the_whole_book(books: dict[str, str]) -> None:
    samples = st.build_samples(st.load_suite(str(SUITE)), st.SuiteOptions(), len)
    assert [s.id for s in samples] == [r["id"] for r in ROWS]
    assert all(len(s.context) > 100_000 for s in samples)  # the whole book, not an excerpt


def test_most_questions_are_recognised_as_global_by_the_router() -> None:
    """``auto`` sends only questions it recognises as global to map-reduce; say how many of ours it would."""
    recognised = [r["id"] for r in ROWS if is_global(r["question"])]
    assert len(recognised) >= len(ROWS) // 2, recognised
