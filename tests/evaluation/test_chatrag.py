"""ChatRAG Bench as released (issue 10, items 7-10): file format, prompt construction and get_scores.py rules.

Expected strings are written out by hand from ``dataset.py`` (``reformat_question``, ``get_inputs``) and
``get_scores.py``; the data file is a hand-made one in the released format (the release is not shipped).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatqa.evaluation import chatrag as cr
from chatqa.evaluation.metrics import CHATRAG_REFUSAL
from chatqa.evaluation.report import summarize
from chatqa.evaluation.samples import Sample
from chatqa.evaluation.suites import load_suite, row_extras, template_for, template_set_for
from chatqa.prompting import fill_template


def turns(n: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"t{i}"} for i in range(n)]


def test_last_seven_turns_and_long_answer_instruction_on_the_first_user_turn() -> None:
    # 9 turns: the window is t2..t8; QuAC's instruction goes on its first user turn (t2), not the last.
    assert cr.format_turns(turns(9), "quac") == (
        "User: Please give a full and complete answer for the question. t2\n\nAssistant: t3\n\nUser: t4\n\n"
        "Assistant: t5\n\nUser: t6\n\nAssistant: t7\n\nUser: t8\n\nAssistant:"
    )


@pytest.mark.parametrize(
    ("dataset", "instruction"),
    [
        ("coqa", "Answer the following question with a short span. The answer needs to be just in a few words."),
        ("topiocqa", "Answer the following question with a short span, or a full and complete answer."),
        ("sqa", "Answer the following question with one or a list of items."),
    ],
)
def test_short_answer_instructions_go_on_the_last_turn(dataset: str, instruction: str) -> None:
    assert cr.format_turns(turns(3), dataset) == f"User: t0\n\nAssistant: t1\n\nUser: {instruction} t2\n\nAssistant:"


def test_contexts_are_title_source_blocks_cut_keeping_the_head() -> None:
    ctxs = [{"title": "A", "text": "one two"}, {"title": "", "text": "three"}]
    assert cr.join_contexts(ctxs) == "title: A, source: one two\n\ntitle: , source: three"

    def words(text: str) -> int:
        return len(text.split())

    assert cr.cut_context("a b c d e f", 3, words) == "a b c"  # get_inputs keeps the first tokens
    assert cr.cut_context("a b c", 10, words) == "a b c"


def _release(tmp_path: Path) -> Path:
    items = [
        {"messages": turns(3), "ctxs": [{"title": "T", "text": "He was unable to finish the race in 1952."}],
         "answers": ["He was unable to finish the race in 1952."]},
        {"messages": turns(1), "ctxs": [{"title": "T", "text": "x"}], "answers": [CHATRAG_REFUSAL]},
        {"messages": turns(1), "ctxs": [{"title": "T", "text": "y"}], "answers": ["", " "]},
    ]  # fmt: skip
    (tmp_path / "quac").mkdir()
    (tmp_path / "quac" / "test.json").write_text(json.dumps(items))
    fin = [{"messages": [{"role": "user", "content": "what percent did it grow?"}],
            "ctxs": [{"title": "", "text": "table"}], "answers": ["divide(1, 2)"], "exe_answer": 0.5}]  # fmt: skip
    (tmp_path / "convfinqa").mkdir()
    (tmp_path / "convfinqa" / "dev.json").write_text(json.dumps(fin))
    return tmp_path


def test_load_release_format_and_official_prompt(tmp_path: Path) -> None:
    data = _release(tmp_path)
    first, unanswerable, empty = cr.load_chatrag(data, "quac", count=lambda t: len(t.split()))
    assert first.question == "t2" and first.messages == turns(2) and first.task == "quac"
    assert first.context == "title: T, source: He was unable to finish the race in 1952."
    assert not first.meta["unanswerable"] and unanswerable.meta["unanswerable"] and empty.answers == ["", " "]
    prompt = fill_template(cr.chatrag_template(first), first.context, first.question).text
    assert prompt == (
        f"{cr.CHATRAG_SYSTEM}\n\ntitle: T, source: He was unable to finish the race in 1952.\n\n"
        "User: Please give a full and complete answer for the question. t0\n\nAssistant: t1\n\nUser: t2\n\nAssistant:"
    )
    (fin,) = cr.load_chatrag(data, "convfinqa")
    assert fin.meta["label"] == 0.5 and fin.meta["formula"] == "divide(1, 2)"
    with pytest.raises(FileNotFoundError):
        cr.load_chatrag(data, "coqa")
    (data / "quac" / "test.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="JSON list"):
        cr.load_chatrag(data, "quac")


def test_quac_suite_uses_chatrags_own_input_for_every_prompt_format() -> None:
    suite = load_suite("quac")
    s = Sample("quac-0-1", "quac", "passage", "and then?", ["x"], messages=turns(2))
    for fmt in ("completion", "chat", "chatqa"):
        assert template_for(suite, s, fmt, lambda m: "unused").startswith(cr.CHATRAG_SYSTEM + "\n\n{context}\n\n")
        assert template_set_for(suite, fmt) == "chatrag/official-chatqa-format"


def _row(i: int, score: float | None, pred: str, unanswerable: bool, excluded: bool = False) -> dict:
    sample = Sample(f"q{i}", "quac", "c", "q", [], meta={"unanswerable": unanswerable})
    row = {"id": f"q{i}", "task": "quac", "mode": "rag", "length": 0, "route": "rag", "error": None,
           "score": score, "reused": False, "input_tokens": 1, "output_tokens": 1,
           "seconds": {"total": 1.0, "prefill": 0.5}, "compute_seconds": 1.0,
           **row_extras(load_suite("quac"), sample, pred)}  # fmt: skip
    if excluded:
        row["excluded"] = "no non-empty reference"
    return row


def test_summary_leaves_out_empty_reference_items_and_reports_unanswerable_accuracy() -> None:
    rows = [
        _row(0, 1.0, "Sorry. I cannot find the answer based on the context.", True),
        _row(1, 0.0, "It was 1983.", True),
        _row(2, 0.5, "He did not finish", False),
        _row(3, None, "whatever", False, excluded=True),
    ]
    (g,) = summarize(rows, ["rag"])
    assert g["n"] == 4 and g["n_scored"] == 3 and g["excluded"] == 1
    assert g["score"] == pytest.approx(50.0)  # (100 + 0 + 50) / 3: the empty-reference item is left out
    assert g["unanswerable_acc"] == 50.0 and g["answerable_acc"] == 100.0
