"""Our own question sets: the data is checked against the books themselves, and the loader and scorer are pure.

These tests read ../shared/data (the novels); they skip when it is absent, and fail under CI=true, where it
must be present.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from chatqa.errors import InputError
from chatqa.evaluation import suites as st
from chatqa.evaluation.question_sets import contains_answer, normalize, resolve_doc, wilson_interval
from chatqa.evaluation.samples import DEFAULT_DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "eval" / "suites" / "novels-qa.yaml"
ROWS = [json.loads(line) for line in (ROOT / "eval" / "suites" / "novels-qa.jsonl").read_text().splitlines()]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')).lower()


@pytest.fixture(scope="module")
def books() -> dict[str, str]:
    if not (DEFAULT_DATA_DIR / "gutenberg").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data missing at {DEFAULT_DATA_DIR} (CI clones ../shared beside the repo)")
        pytest.skip("shared data not found beside the repo")
    docs = st.load_suite(str(SUITE)).args["docs"]
    return {key: _flat(resolve_doc(ref, None).read_text(encoding="utf-8")) for key, ref in docs.items()}


def test_sizes_and_ids() -> None:
    answerable = [r for r in ROWS if r["answerable"]]
    assert len(answerable) >= 80
    assert len(ROWS) - len(answerable) >= 10
    assert len({r["id"] for r in ROWS}) == len(ROWS)
    assert all(r["answers"] for r in answerable) and not any(r["answers"] for r in ROWS if not r["answerable"])
    assert {r["doc"] for r in ROWS} == {"alice", "pride", "sherlock", "moby", "harrow"}


def test_every_accepted_answer_occurs_in_its_book(books: dict[str, str]) -> None:
    missing = [(r["id"], a) for r in ROWS for a in r["answers"] if _flat(a) not in books[r["doc"]]]
    assert missing == []


def test_evidence_is_in_the_book_where_the_position_says(books: dict[str, str]) -> None:
    wrong = []
    for r in ROWS:
        if not r["answerable"]:
            continue
        text = books[r["doc"]]
        at = text.find(_flat(r["evidence"]))
        fraction = at / len(text)
        label = "beginning" if fraction < 1 / 3 else "middle" if fraction < 2 / 3 else "end"
        if at < 0 or label != r["position"]:
            wrong.append((r["id"], at, r["position"]))
    assert wrong == []


def test_questions_are_spread_over_each_book() -> None:
    spread = Counter((r["doc"], r["position"]) for r in ROWS if r["answerable"])
    for doc in ("alice", "pride", "sherlock", "moby", "harrow"):
        assert all(spread[(doc, where)] >= 4 for where in ("beginning", "middle", "end")), (doc, spread)


def test_suite_loads_one_sample_per_question_with_the_book_as_context(books: dict[str, str]) -> None:
    suite = st.load_suite(str(SUITE))
    samples = st.build_samples(suite, st.SuiteOptions(), len)
    assert len(samples) == len(ROWS)
    alice = next(s for s in samples if s.id == "alice-01")
    assert alice.task == "alice" and "White Rabbit" in alice.context and alice.meta["position"] == "beginning"
    assert st.gold_for(suite, alice) == ["rabbit"]
    limited = st.build_samples(suite, st.SuiteOptions(limit=2), len)
    assert Counter(s.task for s in limited) == dict.fromkeys(["alice", "pride", "sherlock", "moby", "harrow"], 2)


def test_budget_subset_suite(books: dict[str, str]) -> None:
    samples = st.build_samples(st.load_suite("novels-qa-budget"), st.SuiteOptions(), len)
    assert len(samples) == 12 and {s.task for s in samples} == {"alice", "sherlock", "harrow"}
    assert all(s.answers for s in samples)


def test_bad_document_reference_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"id": "x", "doc": "d", "question": "q?", "answers": ["a"]}\n')
    for ref in ("/etc/passwd", "data:../secret.txt", "data:nope/missing.txt"):
        (tmp_path / "s.yaml").write_text(
            f"source: question_set\nargs: {{path: q.jsonl, docs: {{d: '{ref}'}}}}\nmetric: qa:contains\n"
            "max_new_tokens: 8\n"
        )
        with pytest.raises(InputError) as exc:
            st.build_samples(st.load_suite(str(tmp_path / "s.yaml")), st.SuiteOptions(), len)
        assert "\n" not in str(exc.value)


def test_containment_normalises_numbers_punctuation_and_words() -> None:
    assert contains_answer("It has eleven arches.", ["eleven"]) == 1.0
    assert contains_answer("It has 11 arches.", ["eleven"]) == 1.0
    assert contains_answer("2683 yards", ["2,683 yards"]) == 1.0
    assert contains_answer("She fell down a rabbit hole", ["rabbit-hole"]) == 1.0
    assert contains_answer("He smoked a pipe", ["Pip"]) == 0.0  # whole words only
    assert contains_answer("Jabez Wilson, a pawnbroker", ["jabez wilson"]) == 1.0
    assert contains_answer("Mr. Wilson", ["Jabez Wilson"]) == 0.0
    assert normalize("The Knave of Hearts") == "knave of hearts"


def test_unanswerable_questions_score_a_decline() -> None:
    assert contains_answer("unanswerable", []) == 1.0
    assert contains_answer("The text does not mention a dog.", []) == 1.0
    assert contains_answer("His dog was called Rex.", []) == 0.0


def test_wilson_interval() -> None:
    low, high = wilson_interval(8, 10)
    assert 0.44 < low < 0.5 and 0.94 < high < 0.97  # the textbook values 0.490, 0.943
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
