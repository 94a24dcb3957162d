"""Evaluation data layer: schema, synthetic generators, real-data loaders and official templates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chatqa.errors import InputError
from chatqa.evaluation.datasets import (
    CHATRAG_REFUSAL,
    load_gutenberg,
    load_infinitebench,
    load_longeval_lines,
    load_longeval_topics,
    load_narrativeqa,
    load_quac,
    make_kv_retrieval,
    make_number_string,
    make_passkey,
    make_ruler_qa,
    make_synthetic_suite,
)
from chatqa.evaluation.samples import Sample, sample_from_dict, sample_to_dict
from chatqa.evaluation.suites import load_suite, max_new_tokens_for, sample_length, stop_for, template_for
from chatqa.evaluation.synthetic import PASSKEY_NOISE, approx_token_count
from chatqa.evaluation.templates import (
    INFINITEBENCH_MAX_NEW_TOKENS,
    LONGEVAL_MAX_NEW_TOKENS,
    RULER_QA_TEMPLATE,
    math_find_prefix,
    render_infinitebench,
    render_longeval,
    truncate_middle,
)
from chatqa.prompting import fill_template
from tests.conftest import in_ci

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# Skipped on a developer box without the data; under CI=true the tests run and fail on the missing files.
needs_data = pytest.mark.skipif(not DATA.is_dir() and not in_ci(), reason=f"shared evaluation data not found at {DATA}")


def words(text: str) -> int:
    return len(text.split())


def needle_core(sample: Sample) -> str:
    key = sample.answers[0]
    if sample.task == "passkey":
        return f"The pass key is {key}. Remember it. {key} is the pass key."
    return f"The sequence of digits is {key}. Remember it. {key} is the sequence of digits."


def one_line_error(exc: BaseException, path: Path) -> None:
    message = str(exc)
    assert "\n" not in message
    assert str(path) in message


PROSE = " ".join(f"Sentence number {i} says nothing at all about keys." for i in range(3000))

# ---------------------------------------------------------------------------------------------- schema


def test_sample_defaults_and_dict_round_trip() -> None:
    s = Sample(id="x-0", task="quac", context="doc", question="q?", answers=[])
    assert s.options is None and s.messages is None and s.meta == {}
    assert sample_from_dict(sample_to_dict(s)) == s
    assert Sample(id="a", task="t", context="", question="", answers=[]).meta is not s.meta


# ------------------------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("make", [make_passkey, make_number_string, make_kv_retrieval])
def test_generators_are_deterministic(make) -> None:
    a, b = make(3000, 0.4, 7, count_tokens=words), make(3000, 0.4, 7, count_tokens=words)
    assert a == b
    assert make(3000, 0.4, 8, count_tokens=words).answers != a.answers


@pytest.mark.parametrize("make", [make_passkey, make_number_string])
@pytest.mark.parametrize("haystack", [None, PROSE])
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_needle_once_at_depth(make, haystack, depth: float) -> None:
    s = make(4000, depth, 3, haystack=haystack, count_tokens=words)
    core = needle_core(s)
    assert s.context.count(core) == 1
    assert s.context.count(s.answers[0]) == 2  # the key only appears in its needle
    assert abs(s.context.index(core) / len(s.context) - depth) < 0.02
    assert s.meta["depth"] == depth and s.meta["label"] == s.answers[0]
    assert s.question in ("What is the pass key?", "What is the sequence of digits?")


@pytest.mark.parametrize("n_tokens", [500, 4000, 32000])
@pytest.mark.parametrize("haystack", [None, PROSE])
def test_length_tracks_target_with_counter(n_tokens: int, haystack) -> None:
    s = make_passkey(n_tokens, 0.5, 0, haystack=haystack, count_tokens=words)
    assert s.meta["length"] == words(s.context)
    assert 0.97 * n_tokens <= s.meta["length"] <= n_tokens


def test_length_without_counter_uses_chars_per_token() -> None:
    s = make_number_string(8000, 0.5, 0)
    assert s.meta["length"] == approx_token_count(s.context)
    assert 0.97 * 8000 <= s.meta["length"] <= 8000
    assert s.meta["token_counter"] == "approx"


def test_official_passkey_layout() -> None:
    s = make_passkey(2000, 0.5, 1, count_tokens=words)
    before, after = s.context.split(needle_core(s) + "\n")
    assert before and set(before.splitlines(keepends=True)) == {PASSKEY_NOISE}
    assert after and set(after.splitlines(keepends=True)) == {PASSKEY_NOISE}
    assert re.fullmatch(r"\d{5}", s.answers[0])


def test_number_string_key_has_repeats() -> None:
    for seed in range(20):
        key = make_number_string(300, 0.5, seed).answers[0]
        assert re.fullmatch(r"\d{10}", key)
        assert any(a == b for a, b in zip(key, key[1:], strict=False))


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_kv_retrieval_shape(depth: float) -> None:
    s = make_kv_retrieval(5000, depth, 11, count_tokens=words)
    assert s.context.startswith("JSON data:\n{")
    data = json.loads(s.context[len("JSON data:\n") :])
    # build_kv_retrieval's input starts with a newline
    key = re.fullmatch(r'\nKey: "([0-9a-f-]{36})"\nThe value associated with the specified key is: ', s.question)
    assert key and data[key.group(1)] == s.answers[0] == s.meta["label"]
    assert s.context.count(key.group(1)) == 1 and s.context.count(s.answers[0]) == 1
    assert abs(s.meta["needle_position"] - depth) < 0.02
    assert 0.97 * 5000 <= s.meta["length"] <= 5000


def test_suite_grid_ids_and_cell_stability() -> None:
    suite = make_synthetic_suite("passkey", [1000, 2000], [0.0, 0.25], 2, seed=5, count_tokens=words)
    assert [s.id for s in suite][:4] == [
        "passkey-1000-d0.00-0",
        "passkey-1000-d0.00-1",
        "passkey-1000-d0.25-0",
        "passkey-1000-d0.25-1",
    ]
    assert len({s.id for s in suite}) == len(suite) == 8
    again = make_synthetic_suite("passkey", [2000], [0.25], 2, seed=5, count_tokens=words)
    assert again == [s for s in suite if s.id.startswith("passkey-2000-d0.25")]
    other = make_synthetic_suite("passkey", [2000], [0.25], 2, seed=6, count_tokens=words)
    assert [s.answers for s in other] != [s.answers for s in again]
    with pytest.raises(ValueError):
        make_synthetic_suite("kv_retrieval", [1000], [0.5], 1, haystack="text")


def test_generator_argument_checks() -> None:
    with pytest.raises(ValueError):
        make_passkey(1000, 1.5, 0)
    with pytest.raises(ValueError):
        make_passkey(0, 0.5, 0)


# ------------------------------------------------------------------------------------------- templates


def test_truncate_middle_matches_official_slicing() -> None:
    tokens = list(range(10))
    assert truncate_middle(tokens, 20) == tokens
    assert truncate_middle(tokens, 4) == [0, 1, 8, 9]
    assert truncate_middle(tokens, 5) == [0, 1, 7, 8, 9]  # floor head, ceil tail, as -5 // 2 == -3
    with pytest.raises(ValueError):
        truncate_middle(tokens, 0)


def test_render_infinitebench_official_prompts() -> None:
    s = make_passkey(300, 0.5, 0)
    prompt = render_infinitebench(s)
    assert prompt.startswith("There is an important info hidden inside a lot of irrelevant text. Find it and")
    assert prompt.endswith(f"{s.context}\n\nWhat is the pass key?")
    mc = Sample(
        id="0",
        task="longbook_choice_eng",
        context="BOOK",
        question="Who?",
        answers=["Bob", "B"],
        options=["Al", "Bob", "Cy", "Di"],
    )
    assert "Question: Who?\n\n" in render_infinitebench(mc)
    assert render_infinitebench(mc).endswith("A. Al\nB. Bob\nC. Cy\nD. Di")
    assert math_find_prefix("... The largest number of the list is: ") == (
        "What is the largest number in the following list?"
    )
    assert INFINITEBENCH_MAX_NEW_TOKENS == {
        "passkey": 6,
        "number_string": 12,
        "kv_retrieval": 50,
        "longbook_sum_eng": 1200,
        "longbook_choice_eng": 40,
        "longbook_qa_eng": 40,
        "longdialogue_qa_eng": 40,
        "math_find": 3,
        "code_debug": 5,
    }
    assert LONGEVAL_MAX_NEW_TOKENS == {"longeval-lines": 100, "longeval-topics": 50}


# --------------------------------------------------------------------------------------- InfiniteBench


def test_load_infinitebench_labels_and_limit(tmp_path: Path) -> None:
    rows = [
        {"id": 0, "context": "C0", "input": "Q?", "answer": ["Bob"], "options": ["Al", "Bob", "Cy", "Di"]},
        {
            "id": 1,
            "context": "C1",
            "input": "Q?",
            "answer": ["Di", "D"],
            "options": ["Al", "Bob", "Cy", "Di"],
        },
    ]
    (tmp_path / "longbook_choice_eng.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "math_find.jsonl").write_text(json.dumps({"id": 3, "context": "[1, 2]", "input": "x", "answer": [2]}))
    choice = load_infinitebench(tmp_path, "longbook_choice_eng")
    assert [s.meta["label"] for s in choice] == [["Bob", "B"], ["Di", "D"]]
    assert choice[0].options == ["Al", "Bob", "Cy", "Di"] and choice[0].question == "Q?"
    assert len(load_infinitebench(tmp_path, "longbook_choice_eng", limit=1)) == 1
    (math,) = load_infinitebench(tmp_path, "math_find")
    assert math.meta["label"] == [2] and math.answers == ["2"] and math.options is None and math.id == "3"


def test_load_infinitebench_missing_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_infinitebench(tmp_path / "nope", "passkey")
    one_line_error(err.value, tmp_path / "nope" / "passkey.jsonl")
    with pytest.raises(ValueError):
        load_infinitebench(tmp_path, "longbook_qa_chn")


# -------------------------------------------------------------------------------------------- LongEval


@needs_data
def test_longeval_lines_split_reconstructs_prompt() -> None:
    samples = load_longeval_lines(DATA / "longeval" / "lines", num_lines=200, limit=5)
    assert len(samples) == 5 and len({s.id for s in samples}) == 5
    for s in samples:
        assert s.context + s.question == s.meta["prompt"] == render_longeval(s)
        assert s.question.startswith("Now the record is over.") and s.meta["random_idx"][0] in s.question
        assert s.meta["correct_line"] in s.context and "Now the record is over" not in s.context
        assert s.answers == [str(s.meta["expected_number"])] and s.task == "longeval-lines"


@needs_data
def test_longeval_prompts_per_format_and_variant() -> None:
    """Completion: LongChat's storywriter prompt (default) or the earlier answer opening (named variant); chat:
    the official prompt as one user message of the model's template. The record's blank line before "Now the
    record is over." survives the pipeline's stripping of the document."""
    suite = load_suite("longeval-lines")
    s = load_longeval_lines(DATA / "longeval" / "lines", num_lines=200, limit=1)[0]
    line = s.meta["random_idx"][0]
    assert s.context.endswith("\n\n")  # the record ends with a blank line (utils.py inserts "\nNow the ...")
    stripped = s.context.strip()

    def filled(fmt: str, render: object = None, variant: str | None = None) -> str:
        return fill_template(template_for(suite, s, fmt, render, variant), stripped, s.question.strip()).text

    longchat = filled("completion")
    assert longchat == s.meta["prompt"] + f"Line <{line}>: <REGISTER_CONTENT> is"
    assert stop_for(suite, s, "completion") == [] and max_new_tokens_for(suite, s.task, "completion") == 15
    opening = filled("completion", variant="answer-opening")
    assert opening == s.meta["prompt"] + f"\n\nThe <REGISTER_CONTENT> in line {line} is <"
    assert stop_for(suite, s, "completion", "answer-opening") == [">", "\n"]
    assert max_new_tokens_for(suite, s.task, "completion", "answer-opening") == 100

    def fake_render(messages: list[dict[str, str]]) -> str:  # a stand-in for the GGUF chat template
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"

    assert filled("chat", fake_render) == f"<user>{s.meta['prompt']}</user><assistant>"
    assert stop_for(suite, s, "chat") == [] and max_new_tokens_for(suite, s.task, "chat") == 100
    topics = load_suite("longeval-topics")
    t = load_longeval_topics(DATA / "longeval", limit=1)[0]
    text = fill_template(template_for(topics, t, "completion"), t.context.strip(), t.question).text
    assert text == t.meta["prompt"] + "\n ASSISTANT: The first topic is"
    with pytest.raises(InputError):
        template_for(suite, s, "completion", None, "gpt4")


@needs_data
def test_longeval_all_sizes_and_topics() -> None:
    lines = load_longeval_lines(limit=1)
    assert [s.meta["num_lines"] for s in lines] == [200, 300, 400, 500, 600, 680]
    # each file keeps its own length class in reports (a power-of-two bucket would merge 500, 600 and 680 lines)
    assert [sample_length(s, 1) for s in lines] == [5000, 7000, 9000, 12000, 14000, 16000]
    topics = load_longeval_topics(DATA / "longeval", limit=2)
    assert topics and all(s.context + s.question == s.meta["prompt"] for s in topics)
    for s in topics:
        assert s.question.startswith("Now the record ends. What is the first topic we discussed?")
        assert s.answers == [s.meta["topics"][0]] and s.answers[0].lower() in s.context.lower()


def test_longeval_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_longeval_lines(tmp_path, num_lines=200)
    one_line_error(err.value, tmp_path / "200_lines.jsonl")


# ----------------------------------------------------------------------------------- ChatRAG-style QA


@needs_data
def test_quac_turns_history_and_references() -> None:
    samples = load_quac(DATA / "quac" / "test-tiny.jsonl")
    assert len(samples) == 150 and len({s.id for s in samples}) == 150
    first, second = samples[0], samples[1]
    assert first.messages is None and first.task == "quac"
    assert second.messages == [
        {"role": "user", "content": first.question},
        {"role": "assistant", "content": first.answers[0]},
    ]
    for s in samples:
        if s.meta["unanswerable"]:
            assert s.answers == [CHATRAG_REFUSAL]
        else:
            assert s.answers and all(a in " ".join(s.context.split()) for a in s.answers)
    assert 0 < sum(s.meta["unanswerable"] for s in samples) < 150
    assert len(load_quac(limit=4)) == 4


@needs_data
def test_narrativeqa() -> None:
    samples = load_narrativeqa()
    assert len(samples) == 50 and all(len(s.answers) == 2 and s.context and s.question for s in samples)


def test_chatrag_loaders_missing(tmp_path: Path) -> None:
    for load, name in [(load_quac, "q.jsonl"), (load_narrativeqa, "n.jsonl")]:
        with pytest.raises(FileNotFoundError) as err:
            load(tmp_path / name)
        one_line_error(err.value, tmp_path / name)


# -------------------------------------------------------------------------------------------- RULER QA


@needs_data
def test_ruler_squad_contains_gold_and_fits() -> None:
    samples = make_ruler_qa("squad", 4096, 4, count_tokens=words)
    squad = json.loads((DATA / "squad_hotpotqa" / "squad_v2_dev.json").read_text())
    paragraph = {qa["question"]: p["context"] for d in squad["data"] for p in d["paragraphs"] for qa in p["qas"]}
    impossible = {
        qa["question"] for d in squad["data"] for p in d["paragraphs"] for qa in p["qas"] if qa["is_impossible"]
    }
    for s in samples:
        assert s.question not in impossible
        assert s.context.startswith("Document 1:\n")
        (gold,) = s.meta["gold_documents"]
        assert f"Document {gold}:\n{paragraph[s.question]}" in s.context
        # RULER counts the prompt with its " Answer:" prefix, plus the 32 answer tokens
        assert s.meta["length"] == words(s.meta["prompt"] + " Answer:") + 32 <= 4096
        assert s.meta["prompt"] == RULER_QA_TEMPLATE.format(context=s.context, query=s.question)
    assert make_ruler_qa("squad", 4096, 4, count_tokens=words) == samples


@needs_data
def test_ruler_hotpotqa_contains_supporting_paragraphs() -> None:
    (s,) = make_ruler_qa("hotpotqa", 3000, 1, count_tokens=words)
    item = json.loads((DATA / "squad_hotpotqa" / "hotpotqa_dev_distractor_first500.json").read_text())[0]
    support = {t for t, _ in item["supporting_facts"]}
    for title, sentences in item["context"]:
        if title in support:
            assert f"{title}\n{''.join(sentences)}" in s.context
    assert len(s.meta["gold_documents"]) == len(support) and s.answers == [item["answer"]]


def test_ruler_missing_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        make_ruler_qa("squad", 4096, 1, data_dir=tmp_path)
    one_line_error(err.value, tmp_path / "squad_hotpotqa" / "squad_v2_dev.json")
    with pytest.raises(ValueError):
        make_ruler_qa("nq", 4096, 1, data_dir=tmp_path)


# --------------------------------------------------------------------------------------------- haystack


@needs_data
def test_gutenberg_haystack_needle() -> None:
    novel = load_gutenberg(DATA / "gutenberg" / "pg11.txt")
    assert "PROJECT GUTENBERG" not in novel[:200]
    s = make_passkey(20000, 0.6, 2, haystack=novel, count_tokens=words)
    assert s.context.count(needle_core(s)) == 1
    assert abs(s.meta["needle_position"] - 0.6) < 0.02 and 0.97 * 20000 <= s.meta["length"] <= 20000
