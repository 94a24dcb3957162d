"""ChatRAG Bench as NVIDIA released it: its file format, its prompt construction and its per-dataset rules.

Re-implemented from the ChatQA release's ``evaluation/dataset.py`` (``reformat_question``, ``get_inputs``) and
``evaluation/get_scores.py``: the ChatQA system line, then the contexts as ``title: ..., source: ...`` blocks
joined by blank lines and cut (keeping the head) so the whole input fits ``max_seq_length`` (4096) with the
answer budget, then the last 7 turns as ``User:``/``Assistant:`` lines ending in ``Assistant:``. One
instruction per dataset: long-answer datasets get "Please give a full and complete answer for the question."
on the *first* user turn of the window; TopiOCQA, SQA and CoQA get theirs on the last turn.

The data is not shipped: pass the folder of the released files (``quac/test.json``, ``doqa/test_cooking.json``,
...). The small local QuAC/NarrativeQA conversions in ``datasets.py`` stay as fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatqa.evaluation.samples import Sample, require_file

CHATRAG_SYSTEM = (
    "System: This is a chat between a user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions based on the context. The assistant "
    "should also indicate when the answer cannot be found in the context."
)
# The released file of each dataset, relative to the ChatRAG Bench data folder.
CHATRAG_FILES: dict[str, str] = {
    "doc2dial": "doc2dial/test.json",
    "quac": "quac/test.json",
    "qrecc": "qrecc/test.json",
    "topiocqa": "topiocqa/dev.json",
    "inscit": "inscit/dev.json",
    "coqa": "coqa/dev.json",
    "hybridial": "hybridial/test.json",
    "doqa_cooking": "doqa/test_cooking.json",
    "doqa_travel": "doqa/test_travel.json",
    "doqa_movies": "doqa/test_movies.json",
    "sqa": "sqa/test.json",
    "convfinqa": "convfinqa/dev.json",
}
CHATRAG_DATASETS: tuple[str, ...] = tuple(CHATRAG_FILES)
LONG_ANSWER = ("doc2dial", "quac", "qrecc", "inscit", "doqa_movies", "doqa_travel", "doqa_cooking", "hybridial",
               "convfinqa")  # fmt: skip
INSTRUCTIONS: dict[str, str] = {
    **dict.fromkeys(LONG_ANSWER, "Please give a full and complete answer for the question."),
    "topiocqa": "Answer the following question with a short span, or a full and complete answer.",
    "sqa": "Answer the following question with one or a list of items.",
    "coqa": "Answer the following question with a short span. The answer needs to be just in a few words.",
}
CHATRAG_REFUSAL = "Sorry. I cannot find the answer based on the context."
MAX_TURNS = 7
MAX_SEQ_LENGTH = 4096
MAX_OUTPUT_TOKENS = 64
NUM_CTX = 5


def dataset_of(task: str) -> str:
    """``quac`` for task ``quac``; the local fixtures' tasks (``quac``, ``narrativeqa``) map onto themselves."""
    return task.removeprefix("chatrag-")


def format_turns(turns: list[dict[str, str]], dataset: str) -> str:
    """``reformat_question``: the last 7 turns with the dataset's instruction, ending in ``Assistant:``."""
    window = [dict(t) for t in turns[-MAX_TURNS:]]
    if not window or window[-1]["role"] != "user":
        raise ValueError("a ChatRAG dialogue must end with a user turn")
    instruction = INSTRUCTIONS.get(dataset)
    if instruction is None:
        raise ValueError(f"no ChatRAG instruction for dataset {dataset!r}; known: {', '.join(INSTRUCTIONS)}")
    if dataset in LONG_ANSWER:
        first = next(t for t in window if t["role"] == "user")
        first["content"] = f"{instruction} {first['content']}"
    else:
        window[-1]["content"] = f"{instruction} {window[-1]['content']}"
    lines = [f"{'User' if t['role'] == 'user' else 'Assistant'}: {t['content']}\n\n" for t in window]
    return "".join(lines) + "Assistant:"


def chatrag_template(sample: Sample) -> str:
    """The official input with ``{context}`` open: system line, contexts, then the formatted turns.

    The turns are written into the template (not through ``{input}``), so the model sees exactly the
    official text; the pipeline still gets the question and history for retrieval and routing."""
    turns = [*(sample.messages or []), {"role": "user", "content": sample.question}]
    text = format_turns(turns, dataset_of(sample.task))
    return CHATRAG_SYSTEM + "\n\n{context}\n\n" + text


def join_contexts(ctxs: list[dict[str, Any]], num_ctx: int = NUM_CTX) -> str:
    """``title: <title>, source: <text>`` for the first ``num_ctx`` contexts, joined by blank lines."""
    return "\n\n".join(f"title: {c.get('title', '')}, source: {c['text']}" for c in ctxs[:num_ctx])


def cut_context(context: str, room: int, count: Callable[[str], int]) -> str:
    """The longest head of ``context`` with at most ``room`` tokens (``get_inputs`` keeps the first tokens).

    Cut on a word boundary by bisection with the generator's token counter (no decode needed)."""
    if room <= 0:
        return ""
    if count(context) <= room:
        return context
    lo, hi = 0, len(context)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(context[:mid]) <= room:
            lo = mid
        else:
            hi = mid
    space = context.rfind(" ", 0, lo)
    return context[: space if space > 0 else lo]


def load_chatrag(
    data_dir: str | Path,
    dataset: str,
    limit: int | None = None,
    count: Callable[[str], int] | None = None,
    num_ctx: int = NUM_CTX,
    answerable_index: set[int] | None = None,
) -> list[Sample]:
    """One sample per item of a released ChatRAG Bench file (``messages``, ``ctxs``, ``answers``).

    With ``count`` the context is cut as ``get_inputs`` cuts it (4096-token input, 64 output tokens);
    ``meta["context_cut"]`` says whether it was. The question is the last user turn; earlier turns are the
    history (the prompt keeps the last 7 turns). Gold: ``answers`` (ConvFinQA: ``exe_answer``, formula first).
    """
    if dataset not in CHATRAG_FILES:
        raise ValueError(f"unknown ChatRAG dataset {dataset!r}; known: {', '.join(CHATRAG_DATASETS)}")
    path = require_file(Path(data_dir) / CHATRAG_FILES[dataset], f"ChatRAG Bench {dataset}")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a ChatRAG Bench JSON file ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(items, list):
        raise ValueError(f"{path} is not a ChatRAG Bench file (expected a JSON list of items)")
    samples = []
    answerable_seen = 0
    for i, item in enumerate(items[:limit] if limit else items):
        if not isinstance(item, dict) or not item.get("messages") or "ctxs" not in item:
            raise ValueError(f"{path} item {i} lacks 'messages' or 'ctxs'")
        turns = [{"role": m["role"], "content": m["content"]} for m in item["messages"]]
        if turns[-1]["role"] != "user":
            raise ValueError(f"{path} item {i}: the last message is not a user turn")
        answers = item.get("answers", item.get("answer"))
        answers = [str(a) for a in answers] if isinstance(answers, list) else [str(answers)]
        context = join_contexts(item["ctxs"], num_ctx)
        cut = False
        if count is not None:
            overhead = count(CHATRAG_SYSTEM) + count(format_turns(turns, dataset))
            short = cut_context(context, MAX_SEQ_LENGTH - MAX_OUTPUT_TOKENS - overhead, count)
            cut, context = short != context, short
        # one cell per dataset, as ChatRAG reports it (single_cell: no length buckets)
        unanswerable = bool(answers) and answers[0].strip() == CHATRAG_REFUSAL
        meta: dict[str, Any] = {"dataset": dataset, "index": i, "source": str(path), "context_cut": cut,
                                "single_cell": True, "unanswerable": unanswerable}  # fmt: skip
        if not meta["unanswerable"]:
            if answerable_index is not None:
                meta["answerable_listed"] = answerable_seen in answerable_index
            answerable_seen += 1
        if dataset == "convfinqa":
            meta.update(label=item.get("exe_answer"), formula=answers[0] if answers else None)
        samples.append(Sample(id=f"{dataset}-{i}", task=dataset, context=context, question=turns[-1]["content"],
                              answers=answers, messages=turns[:-1] or None, meta=meta))  # fmt: skip
    return samples
