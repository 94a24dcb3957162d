"""Prompts and answer extraction as the official harnesses have them (issue 10, items 1-6 and 11).

Each expected value comes from the official source, not from our output: the question strings of
InfiniteBench's ``construct_synthetic_dataset.py``, its ``create_prompt`` (``str.format``) and ``create_msgs``,
LongChat's ``longeval/utils.py`` and ``auto_topic_eval.py``, RULER's ``qa.py`` and ``template.py``. Pure logic:
no model is loaded (the chat template is a stand-in renderer, named as such).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from chatqa.evaluation import templates as tpl
from chatqa.evaluation.datasets import load_longeval_topics, make_passkey
from chatqa.evaluation.judge import TopicJudge, judge_prompt, verdict
from chatqa.evaluation.samples import Sample
from chatqa.evaluation.suites import load_suite, template_for, template_set_for
from chatqa.evaluation.synthetic import PASSKEY_NOISE, RULER_COMMIT, make_ruler_qa
from chatqa.prompting import fill_template

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def require_data(path: Path) -> None:
    """Shared data is needed: skip on a developer box without it, fail under CI (CI=true)."""
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared data missing under CI: {path}")
        pytest.skip(f"shared data not found: {path}")


def fake_render(messages: list[dict[str, str]]) -> str:
    """A stand-in for the GGUF chat template (the real one is tests/generation's business)."""
    return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"


def through_pipeline(template: str, sample: Sample) -> str:
    """What the pipeline sends for LC: the document and question stripped, then the template filled."""
    return fill_template(template, sample.context.strip(), sample.question.strip()).text


# --------------------------------------------------------------------------------- 1. math_find prefix

# The seven question inputs of construct_synthetic_dataset.py's generate_math_qa, verbatim.
_ANSWER_ONE = "You should answer with only one number, no other words. "
MATH_FIND_INPUTS = {
    "largest number": _ANSWER_ONE + "The largest number of the list is: ",
    "second largest number": _ANSWER_ONE + "The second largest number of the list is: ",
    "third largest number": _ANSWER_ONE + "The third largest number of the list is: ",
    "smallest number": _ANSWER_ONE + "The smallest number of the list is: ",
    "second smallest number": _ANSWER_ONE + "The second smallest number of the list is: ",
    "third smallest number": _ANSWER_ONE + "The third smallest number of the list is: ",
    "median": _ANSWER_ONE + "The median number of the list is: ",
}


@pytest.mark.parametrize("form", list(MATH_FIND_INPUTS))
def test_math_find_prefix_for_all_seven_official_forms(form: str) -> None:
    # create_prompt: re.findall(r"The .+ of", input)[0].lower()[:-3]
    target = "the median number" if form == "median" else f"the {form}"
    assert tpl.math_find_prefix(MATH_FIND_INPUTS[form]) == f"What is {target} in the following list?"
    sample = Sample("0", "math_find", "[1, 2, 3]", MATH_FIND_INPUTS[form], ["2"])
    prompt = tpl.render_infinitebench(sample)
    assert prompt == f"What is {target} in the following list?\n\n[1, 2, 3]\n\n{MATH_FIND_INPUTS[form]}"


# ----------------------------------------------------------------------- 2. chat models: the chat template


def test_infinitebench_chat_models_get_system_and_user_messages() -> None:
    """create_msgs: [system "You are a helpful assistant", user <prompt>], through the model's template."""
    suite = load_suite("passkey")
    s = make_passkey(300, 0.5, 0)
    official = tpl.INFINITEBENCH_TEMPLATES["passkey"].format(context=s.context, input=s.question)
    expected = fake_render([{"role": "system", "content": "You are a helpful assistant"},
                            {"role": "user", "content": official}])  # fmt: skip
    assert through_pipeline(template_for(suite, s, "chat", fake_render), s) == expected
    assert template_set_for(suite, "chat") == "infinitebench/gpt4+model-chat-template"
    assert template_set_for(suite, "completion") == "infinitebench/yarn-mistral+raw"


@pytest.mark.parametrize("task", ["passkey", "number_string", "kv_retrieval"])
def test_infinitebench_answer_opening_starts_the_reply_and_keeps_the_official_prompt(task: str) -> None:
    """The named variant puts the restatement a chat model writes anyway ("The sequence of digits is") into
    the assistant turn, so the official budget (12 tokens for number_string) is left for the answer. The
    user turn stays the official GPT-4 prompt; completion prompts (already ending with it) are untouched."""
    from chatqa.evaluation.datasets import make_kv_retrieval, make_number_string
    from chatqa.evaluation.suites import SuiteOptions, max_new_tokens_for, resolve_options

    suite = load_suite(task)
    make = {"passkey": make_passkey, "number_string": make_number_string, "kv_retrieval": make_kv_retrieval}[task]
    s = make(400, 0.5, 0)
    official = template_for(suite, s, "chat", fake_render)
    opened = template_for(suite, s, "chat", fake_render, "answer-opening")
    assert opened == official + tpl.INFINITEBENCH_CHAT_OPENINGS[task]
    assert opened.endswith(" is:" if task == "kv_retrieval" else " is")
    chatqa = template_for(suite, s, "chatqa", None, "answer-opening")
    assert chatqa.endswith("\n\nAssistant: " + tpl.INFINITEBENCH_CHAT_OPENINGS[task])
    assert template_for(suite, s, "completion", None, "answer-opening") == template_for(suite, s, "completion")
    assert max_new_tokens_for(suite, task, "chat", "answer-opening") == max_new_tokens_for(suite, task, "chat")
    assert template_set_for(suite, "chat", "answer-opening") == "infinitebench/gpt4+model-chat-template+answer-opening"
    assert template_set_for(suite, "completion", "answer-opening") == "infinitebench/yarn-mistral+raw"  # unchanged
    assert resolve_options(suite, SuiteOptions()).variant is None  # official prompts unless asked
    assert resolve_options(suite, SuiteOptions(variant="answer-opening")).variant == "answer-opening"


def test_infinitebench_answer_opening_leaves_other_tasks_and_rejects_unknown_names() -> None:
    from chatqa.errors import InputError

    suite = load_suite("passkey")
    book = Sample("b", "longbook_qa_eng", "A long book.", "Who is it?", ["Alice"])
    qa = dataclasses.replace(suite, template="infinitebench:{task}")  # the real-data suite's form
    assert template_for(qa, book, "chat", fake_render, "answer-opening") == template_for(qa, book, "chat", fake_render)
    with pytest.raises(InputError, match="unknown InfiniteBench variant"):
        template_for(suite, make_passkey(300, 0.5, 0), "chat", fake_render, "longchat")


def test_ruler_answer_prefix_goes_after_the_assistant_header() -> None:
    """prepare.py: model_template.format(task_template=...) + answer_prefix."""
    suite = load_suite("ruler-squad")
    s = Sample("r", "ruler-qa-squad", "Document 1:\nParis is in France.", "Where is Paris?", ["France"])
    task = tpl.RULER_QA_TEMPLATE.format(context=s.context, query=s.question)
    assert through_pipeline(template_for(suite, s, "chat", fake_render), s) == fake_render(
        [{"role": "user", "content": task}]) + " Answer:"  # fmt: skip
    assert through_pipeline(template_for(suite, s, "completion"), s) == task + " Answer:"  # RULER's "base"


def test_chatqa_format_wraps_the_benchmark_prompt() -> None:
    wrapped = tpl.wrap_prompt("PROMPT", "chatqa", answer_prefix=" Answer:")
    assert wrapped.startswith("System: This is a chat between") and wrapped.endswith(
        "\n\nUser: PROMPT\n\nAssistant: Answer:")  # fmt: skip
    with pytest.raises(ValueError):
        tpl.wrap_prompt("PROMPT", "chat")  # a chat model without its template must not silently go raw


# ------------------------------------------------------------------------------- 3. single-pass filling


def test_placeholders_inside_documents_and_options_stay_text() -> None:
    """str.format does one pass: a "{input}" in a code document or option is not a placeholder."""
    code = 'def f():\n    return "{input} and {question}"\n'
    s = Sample("c", "code_debug", code, "", ["f", "A"], options=["f", "g{question}", "h", "i"])
    official = tpl.INFINITEBENCH_TEMPLATES["code_debug"].format(
        context=code, OPTION_A="f", OPTION_B="g{question}", OPTION_C="h", OPTION_D="i")  # fmt: skip
    assert tpl.render_infinitebench(s) == official
    assert fill_template("A {context} B {input}", "x {input} {context}", "Q").text == "A x {input} {context} B Q"


# --------------------------------------------------------------------- 6. newline edges of the official data


def test_passkey_context_keeps_its_trailing_newline() -> None:
    """build_passkey: noise * j + needle + noise * (N - j), so the context ends with a newline, and the
    yarn-mistral prompt has three newlines before the question."""
    suite = load_suite("passkey")
    s = make_passkey(400, 0.5, 3)
    assert s.context.endswith(PASSKEY_NOISE) and s.context.endswith(".\n")
    official = tpl.INFINITEBENCH_OPEN_TEMPLATES["passkey"].format(context=s.context, input=s.question)
    assert through_pipeline(template_for(suite, s, "completion"), s) == official
    assert "again.\n\n\nWhat is the pass key?" in official


def test_kv_input_keeps_its_leading_newline() -> None:
    suite = load_suite("kv_retrieval")
    s = Sample("k", "kv_retrieval", 'JSON data:\n{"a": "b"}', '\nKey: "a"\nThe value associated with the '
               "specified key is: ", ["b"])  # fmt: skip
    official = tpl.INFINITEBENCH_TEMPLATES["kv_retrieval"].format(context=s.context, input=s.question)
    assert through_pipeline(template_for(suite, s, "chat", fake_render), s) == fake_render(
        [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": official}]
    )


# ------------------------------------------------------------------------------------- 5. LongEval topics


def test_topics_files_5_to_25_load_and_score_as_a_lower_bound() -> None:
    require_data(DATA / "longeval" / "topics")
    suite = load_suite("longeval-topics")
    samples = load_longeval_topics(limit=1, sizes=suite.args.get("sizes"))
    assert [s.meta["num_topics"] for s in samples] == [5, 10, 15, 20]  # 25 is not in the shared copy
    for s in samples:
        assert s.answers == [s.meta["topics"][0]] and s.meta["nominal_length"] == s.meta["num_topics"]


class FakeGenerator:
    """Returns a fixed reply and records prompts: the judge's logic without a model."""

    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []

    def generate(self, prompt: str, max_new_tokens: int, *args: object, **kw: object) -> object:
        self.prompts.append(prompt)
        return type("Gen", (), {"text": self.reply})()


def test_topic_judge_asks_the_official_question() -> None:
    prompt = judge_prompt("the future of AI", "We first talked\nabout AI's future")
    assert prompt.startswith("I am testing whether a LLM model can correctly retreieve the first topic")
    assert prompt.endswith("The ground truth is the future of AI, the model prediction is We first talked about "
                           "AI's future")  # fmt: skip
    assert verdict("1") == 1.0 and verdict(" 1\n") == 1.0 and verdict("1.") == 0.0 and verdict("0") == 0.0
    fake = FakeGenerator("1")
    judge = TopicJudge(fake, "completion", "judge-profile")
    assert judge("the future of AI", "AI's future") == 1.0 and fake.prompts == [
        judge_prompt("the future of AI", "AI's future")
    ]


# ------------------------------------------------------------------------------------------------ 11. RULER


def test_ruler_haystack_is_the_largest_that_fits_and_is_pinned() -> None:
    """qa.py at the pinned commit: binary search for the largest document count whose prompt (with " Answer:")
    plus 32 tokens fits; so one more step of 10 documents would not fit for question 0."""
    require_data(DATA / "squad_hotpotqa")

    def words(text: str) -> int:
        return len(text.split())

    (s,) = make_ruler_qa("squad", 2048, 1, count_tokens=words)
    assert s.meta["ruler_commit"] == RULER_COMMIT and s.meta["length"] <= 2048
    assert s.meta["length"] == words(s.meta["prompt"] + " Answer:") + 32
    assert s.meta["n_docs"] > 10


def test_ruler_repeats_documents_when_the_pool_runs_out(tmp_path: Path) -> None:
    """qa.py: asking for more documents than exist repeats the pool ((DOCS * repeats)[:num_docs])."""
    items = [{"question": f"q{i}?", "answer": "a", "supporting_facts": [["T0", 0]],
              "context": [["T0", ["zero."]], ["T1", ["one."]]]} for i in range(2)]  # fmt: skip
    path = tmp_path / "hotpot_dev_distractor_v1.json"
    path.write_text(json.dumps(items))
    (s,) = make_ruler_qa("hotpotqa", 400, 1, count_tokens=lambda t: len(t.split()), path=path)
    assert s.meta["n_docs"] > 2  # only 2 distinct paragraphs exist
    assert s.context.count("T0\nzero.") + s.context.count("T1\none.") == s.meta["n_docs"]


def test_real_gguf_chat_template_keeps_the_placeholders_for_the_pipeline() -> None:
    """Through SmolLM2's own GGUF chat template (the generators' one renderer): the official prompt is the user
    message, whole, and the document and question land where the official str.format would put them."""
    from chatqa.config import load_profile
    from chatqa.generation import load_tokenizer

    tokenizer = load_tokenizer(load_profile("smollm2").generator)
    suite = load_suite("kv_retrieval")
    s = Sample("k", "kv_retrieval", 'JSON data:\n{"a": "{input}"}', '\nKey: "a"\nThe value associated with the '
               "specified key is: ", ['{input}'])  # fmt: skip
    official = tpl.INFINITEBENCH_TEMPLATES["kv_retrieval"].format(context=s.context, input=s.question)
    expected = tokenizer.render_chat([{"role": "system", "content": "You are a helpful assistant"},
                                      {"role": "user", "content": official}])  # fmt: skip
    assert "<|im_start|>user" in expected  # SmolLM2's ChatML template, with the generation prompt
    assert through_pipeline(template_for(suite, s, "chat", tokenizer.render_chat), s) == expected
