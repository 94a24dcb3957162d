"""``chatqa.batch`` with the local executor: question files, rows as `ask --json` writes them, resume, errors.

The answering tests use the real SmolLM2 through llama.cpp on two ~700-token documents (tests/batch_data.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatqa.batch import load_done, read_questions, run_batch, settings_key
from chatqa.errors import InputError
from tests.batch_data import ASK, PROFILE, rows, write_docs, write_questions


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from chatqa import ChatQA

    return ChatQA.from_profile(PROFILE, home=str(tmp_path_factory.mktemp("batch-home")))


@pytest.fixture(scope="module")
def first(qa: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Path]:
    folder = tmp_path_factory.mktemp("batch")
    questions = write_questions(folder, n_per_doc=2)
    out = folder / "answers.jsonl"
    return out, run_batch(read_questions(questions), out, qa=qa, options=ASK), questions


def test_plain_text_questions_take_the_command_line_documents(tmp_path: Path) -> None:
    path = tmp_path / "qs.txt"
    path.write_text("Who built it?\n\n  When?  \n", encoding="utf-8")
    qs = read_questions(path, docs=["book.txt"])
    book = ("book.txt",)
    assert [(q.id, q.question, q.docs) for q in qs] == [("1", "Who built it?", book), ("3", "When?", book)]


def test_jsonl_fields_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "qs.jsonl"
    turns = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "X."}]
    turns.append({"role": "user", "content": "And?"})
    lines = [{"id": "x", "question": "Q1"}, {"question": "Q2", "docs": "other.txt"}, {"messages": turns, "id": 7}]
    path.write_text("\n".join(map(json.dumps, lines)) + "\n", encoding="utf-8")
    qs = read_questions(path, docs=["book.txt"])
    assert [(q.id, q.question, q.docs) for q in qs] == [
        ("x", "Q1", ("book.txt",)), ("2", "Q2", ("other.txt",)), ("7", None, ("book.txt",))]  # fmt: skip
    assert qs[2].messages is not None and qs[2].messages[-1]["content"] == "And?"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "a"}\n{"question": \n', "line 2: not JSON"),
        ('{"id": 1, "question": "a"}\n{"id": "1", "question": "b"}\n', "id '1' appears twice"),
        ('{"question": ""}\n', "line 1: 'question' must be a non-empty string"),
        ('{"messages": [{"role": "assistant", "content": "hi"}]}\n', "needs a 'question'"),
        ('{"question": "a", "docs": 3}\n', "'docs' must be a path or a list of paths"),
    ],
)
def test_bad_question_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "qs.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_questions(path, docs=["book.txt"])


def test_a_question_without_any_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "qs.jsonl"
    path.write_text('{"question": "a"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 1: no document"):
        read_questions(path)


def test_rows_have_the_fields_of_ask_json_and_reuse_the_document_prefix(qa: Any, first: tuple) -> None:
    out, result, _ = first
    got = rows(out)
    assert sorted(got) == ["a0", "a1", "b0", "b1"] and result.answered == 4 and result.errors == 0
    direct = qa.ask(got["a0"]["question"], docs=[str(Path(out).parent / "founding.txt")], **ASK).to_dict()
    assert set(got["a0"]) == set(direct) | {"id", "error", "settings"}
    assert got["a0"]["answer"] == direct["answer"] and got["a0"]["route"] == "long"
    # grouped by document: the second question on each document read its prefix from the KV state
    assert got["a1"]["usage"]["cached_tokens"] >= 512 and got["b1"]["usage"]["cached_tokens"] >= 512
    assert result.cached_tokens == sum(r["usage"]["cached_tokens"] for r in got.values()) > 0
    order = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert order == ["a0", "a1", "b0", "b1"]  # written as answered, one document after the other


def test_resume_skips_answered_redoes_errors_and_a_cut_row(qa: Any, first: tuple, tmp_path: Path) -> None:
    out, _, questions = first
    before = rows(out)
    lines = out.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[1])
    broken.update(answer=None, error="RuntimeError: the machine fell over")
    resumed = tmp_path / "answers.jsonl"  # a0 fine, a1 an error row, b0 cut off mid-write by a kill, b1 missing
    resumed.write_text(lines[0] + "\n" + json.dumps(broken) + "\n" + lines[2][:40], encoding="utf-8")
    result = run_batch(read_questions(questions), resumed, qa=qa, options=ASK)
    assert (result.skipped, result.answered, result.errors) == (1, 3, 0)
    after = resumed.read_text(encoding="utf-8").splitlines()
    assert len(after) == 4 and all(line.startswith("{") for line in after)
    assert {k: r["answer"] for k, r in rows(resumed).items()} == {k: r["answer"] for k, r in before.items()}
    again = run_batch(read_questions(questions), resumed, qa=qa, options=ASK)
    assert (again.skipped, again.answered) == (4, 0) and resumed.read_text().splitlines() == after


def test_other_settings_do_not_mix_into_one_file(qa: Any, first: tuple) -> None:
    out, _, questions = first
    with pytest.raises(InputError, match="other settings"):
        run_batch(read_questions(questions), out, qa=qa, options={**ASK, "max_new_tokens": 8})
    assert settings_key(qa.config, ASK) != settings_key(qa.config, {**ASK, "mode": "rag"})


def test_a_missing_document_is_an_error_row_and_the_rest_is_answered(qa: Any, tmp_path: Path) -> None:
    a, _ = write_docs(tmp_path)
    path = tmp_path / "qs.jsonl"
    gone = {"id": "gone", "question": "Who?", "docs": [str(tmp_path / "nope.txt")]}
    ok = {"id": "ok", "question": "Who first proposed a canal?", "docs": [str(a)]}
    path.write_text(json.dumps(gone) + "\n" + json.dumps(ok) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_batch(read_questions(path), out, qa=qa, options=ASK)
    got = rows(out)
    assert (result.answered, result.errors) == (1, 1)
    assert got["gone"]["answer"] is None and "nope.txt: no such file" in got["gone"]["error"]
    assert got["ok"]["error"] is None and got["ok"]["answer"]
    assert set(load_done(out, settings_key(qa.config, ASK))) == {"ok"}  # the error row was dropped for a redo
