"""Synthetic long-context tasks built like the official ones, at any length and needle depth.

InfiniteBench's ``data/construct_synthetic_dataset.py`` only ships fixed 128K files; re-generating with the
same needle text, noise and key construction lets us sweep length x depth for the RAG-vs-LC comparison.
RULER QA follows ``scripts/data/synthetic/qa.py`` (SQuAD / HotpotQA paragraphs among distractors).
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from chatqa.evaluation.samples import DEFAULT_DATA_DIR, Sample, require_file
from chatqa.evaluation.templates import (
    RULER_DOCUMENT_TEMPLATE,
    RULER_QA_ANSWER_PREFIX,
    RULER_QA_MAX_NEW_TOKENS,
    RULER_QA_TEMPLATE,
)

TokenCounter = Callable[[str], int]
Seed = int | str

# Without the generator's tokenizer we assume 4 characters per token, the usual figure for English BPE
# vocabularies (Llama 3, GPT-4); the official noise line is 89 characters for ~25 Llama 2 tokens (3.6).
CHARS_PER_TOKEN = 4.0

PASSKEY_NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
NEEDLES = {
    "passkey": "The pass key is {key}. Remember it. {key} is the pass key.\n",
    "number_string": "The sequence of digits is {key}. Remember it. {key} is the sequence of digits.\n",
}
# As the official builder writes them; the KV input starts with a newline (``build_kv_retrieval``).
QUESTIONS = {
    "passkey": "What is the pass key?",
    "number_string": "What is the sequence of digits?",
    "kv_retrieval": '\nKey: "{key}"\nThe value associated with the specified key is: ',
}
SYNTHETIC_TASKS = ("passkey", "number_string", "kv_retrieval")
_BOUNDARY = re.compile(r"[.!?][\"')\]\u201d\u2019]*\s+|\n\s*\n")  # a sentence end or a blank line


def approx_token_count(text: str) -> int:
    """Token estimate used when the caller has no tokenizer (see :data:`CHARS_PER_TOKEN`)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _passkey_key(rng: random.Random) -> str:
    """Five independent digits, as the official builder (a leading zero is allowed)."""
    return "".join(str(rng.randint(0, 9)) for _ in range(5))


def _number_string_key(rng: random.Random) -> str:
    """Ten digits with forced repeats: five random digits, then five insertions duplicating a digit."""
    digits = [str(rng.randint(0, 9)) for _ in range(5)]
    for k in range(5):
        pos = rng.randint(0, 5 + k - 1)
        digits.insert(pos, digits[pos])
    return "".join(digits)


def _fit_units(measure: Callable[[int], int], target: int, guess: int) -> int:
    """Largest unit count whose text stays within ``target`` tokens; few tokenizer calls on long texts.

    Proportional steps from the last measurement, kept inside the known bracket; stops once the fitting
    count is within 0.2% of the target or the bracket is one unit wide.
    """
    tol = max(2, target // 500)
    lo, hi, k = 0, None, max(1, guess)
    for _ in range(40):
        m = measure(k)
        if m <= target:
            lo = max(lo, k)
            if target - m <= tol:
                break
        else:
            hi = k if hi is None else min(hi, k)
        if hi is not None and hi - lo <= 1:
            break
        nxt = round(k * target / m) if m > 0 else 2 * k
        if hi is None:
            nxt = max(nxt, lo + 1)
        elif not lo < nxt < hi:
            nxt = (lo + hi) // 2
        k = nxt
    return lo


def _nearest_boundary(text: str, pos: int) -> int:
    """Snap an insertion point to the closest sentence end or blank line, so no sentence is split."""
    if pos <= 0 or pos >= len(text):
        return max(0, min(pos, len(text)))
    start = max(0, pos - 1000)
    ends = [m.end() for m in _BOUNDARY.finditer(text, start, min(len(text), pos + 1000))]
    if ends:
        return min(ends, key=lambda e: abs(e - pos))
    space = text.rfind(" ", 0, pos)
    return space + 1 if space >= 0 else pos


def _splice(body: str, pos: int, needle: str) -> str:
    """Insert the needle as its own line after a newline, else as a sentence between sentences."""
    before, after = body[:pos], body[pos:]
    if not before or before.endswith("\n"):
        return before + needle + after
    core = needle.rstrip("\n")
    lead = "" if before[-1].isspace() else " "
    trail = " " if after and not after[0].isspace() else ""
    return before + lead + core + trail + after


def _prose_body(haystack: str, n_chars: int) -> str:
    """The first ``n_chars`` of the haystack (repeated if too short), cut back to a sentence or word end."""
    unit = haystack.strip() + "\n\n"
    text = unit * max(1, math.ceil(n_chars / len(unit)))
    if n_chars >= len(text):
        return text
    cut = text[:n_chars]
    ends = [m.end() for m in _BOUNDARY.finditer(cut, max(0, n_chars - 1000))]
    if ends:  # end on a sentence so that depth 1.0 puts the needle after a full sentence
        return cut[: ends[-1]]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > 0 else cut


def _check(n_tokens: int, depth: float) -> None:
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")


def _depth_tag(depth: float) -> str:
    return f"{depth:.2f}" if round(depth, 2) == depth else f"{depth:g}"


def _needle_sample(
    task: str,
    n_tokens: int,
    depth: float,
    rng: random.Random,
    sample_id: str,
    haystack: str | None,
    count_tokens: TokenCounter | None,
    cache: dict[Any, int],
) -> Sample:
    """Passkey / number_string: needle sentence at ``depth`` of a haystack sized to ``n_tokens`` (context)."""
    _check(n_tokens, depth)
    if haystack is not None and not haystack.strip():
        raise ValueError("haystack is empty")
    count = count_tokens or approx_token_count
    key = _passkey_key(rng) if task == "passkey" else _number_string_key(rng)
    needle = NEEDLES[task].format(key=key)
    if haystack is None:
        # Official layout: noise * j + needle + noise * (N - j), the needle between whole noise lines.
        def build(n: int) -> str:
            j = round(depth * n)
            return PASSKEY_NOISE * j + needle + PASSKEY_NOISE * (n - j)

        unit_tokens = count(PASSKEY_NOISE * 20) / 20
    else:

        def build(n: int) -> str:
            body = _prose_body(haystack, n)
            return _splice(body, _nearest_boundary(body, round(depth * len(body))), needle)

        unit_tokens = count(haystack[:20000]) / max(1, len(haystack[:20000]))
    memo: dict[int, int] = {}

    def measure(n: int) -> int:
        if n not in memo:
            memo[n] = count(build(n))
        return memo[n]

    cache_key = (task, n_tokens, depth, haystack is None, count_tokens)
    guess = cache.get(cache_key) or max(1, round(n_tokens / max(unit_tokens, 1e-6)))
    units = _fit_units(measure, n_tokens, guess)
    cache[cache_key] = units
    context = build(units)
    core = needle.rstrip("\n")
    return Sample(
        id=sample_id,
        task=task,
        context=context,
        question=QUESTIONS[task],
        answers=[key],
        meta={
            "label": key,
            "length": measure(units),
            "target_length": n_tokens,
            "depth": depth,
            "needle_position": context.index(core) / max(1, len(context)),
            "haystack": "noise" if haystack is None else "text",
            "units": units,
            "token_counter": "approx" if count_tokens is None else "caller",
            "synthetic": True,
        },
    )


def _kv_sample(
    n_tokens: int,
    depth: float,
    rng: random.Random,
    sample_id: str,
    count_tokens: TokenCounter | None,
    cache: dict[Any, int],
) -> Sample:
    """KV retrieval: a JSON object of random UUID pairs; the asked pair sits at ``depth`` of the object."""
    _check(n_tokens, depth)
    count = count_tokens or approx_token_count
    pairs: list[tuple[str, str]] = []

    def build(n: int) -> tuple[str, int]:
        while len(pairs) < n:  # drawn in a fixed order, so a prefix never depends on n
            pairs.append(
                (
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                )
            )
        body = ", ".join(f'"{k}": "{v}"' for k, v in pairs[:n])
        return "JSON data:\n{" + body + "}", round(depth * (n - 1))

    memo: dict[int, int] = {}

    def measure(n: int) -> int:
        if n not in memo:
            memo[n] = count(build(n)[0])
        return memo[n]

    cache_key = ("kv_retrieval", n_tokens, depth, count_tokens)
    guess = cache.get(cache_key) or max(1, round(n_tokens / max(1.0, count(build(8)[0]) / 8)))
    units = max(1, _fit_units(measure, n_tokens, guess))
    cache[cache_key] = units
    context, answer_idx = build(units)
    key, value = pairs[answer_idx]
    return Sample(
        id=sample_id,
        task="kv_retrieval",
        context=context,
        question=QUESTIONS["kv_retrieval"].format(key=key),
        answers=[value],
        meta={
            "label": value,
            "length": measure(units),
            "target_length": n_tokens,
            "depth": depth,
            "needle_position": context.index(f'"{key}"') / len(context),
            "n_pairs": units,
            "answer_index": answer_idx,
            "token_counter": "approx" if count_tokens is None else "caller",
            "synthetic": True,
        },
    )


def make_passkey(
    n_tokens: int,
    depth: float,
    seed: Seed,
    haystack: str | None = None,
    count_tokens: TokenCounter | None = None,
) -> Sample:
    """One InfiniteBench passkey sample; its context has about (never more than) ``n_tokens`` tokens."""
    sid = f"passkey-{n_tokens}-d{_depth_tag(depth)}-s{seed}"
    return _needle_sample("passkey", n_tokens, depth, random.Random(seed), sid, haystack, count_tokens, {})


def make_number_string(
    n_tokens: int,
    depth: float,
    seed: Seed,
    haystack: str | None = None,
    count_tokens: TokenCounter | None = None,
) -> Sample:
    """One InfiniteBench number_string (Retrieve.Number) sample; same layout as passkey, 10-digit key."""
    sid = f"number_string-{n_tokens}-d{_depth_tag(depth)}-s{seed}"
    return _needle_sample("number_string", n_tokens, depth, random.Random(seed), sid, haystack, count_tokens, {})


def make_kv_retrieval(
    n_tokens: int,
    depth: float,
    seed: Seed,
    count_tokens: TokenCounter | None = None,
) -> Sample:
    """One InfiniteBench kv_retrieval sample (no haystack: the distractor pairs are the haystack)."""
    sid = f"kv_retrieval-{n_tokens}-d{_depth_tag(depth)}-s{seed}"
    return _kv_sample(n_tokens, depth, random.Random(seed), sid, count_tokens, {})


def make_synthetic_suite(
    task: str,
    lengths: Sequence[int],
    depths: Sequence[float],
    n_per_cell: int,
    seed: Seed = 0,
    haystack: str | None = None,
    count_tokens: TokenCounter | None = None,
) -> list[Sample]:
    """A length x depth grid, ids like ``passkey-8192-d0.25-0``; each cell seeded from its id, so a cell's
    samples do not change when other lengths or depths are added."""
    if task not in SYNTHETIC_TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; known: {', '.join(SYNTHETIC_TASKS)}")
    if task == "kv_retrieval" and haystack is not None:
        raise ValueError("kv_retrieval has no haystack: its distractors are the other key-value pairs")
    cache: dict[Any, int] = {}
    out: list[Sample] = []
    for length in lengths:
        for depth in depths:
            for i in range(n_per_cell):
                sid = f"{task}-{length}-d{_depth_tag(depth)}-{i}"
                rng = random.Random(f"{seed}:{sid}")
                if task == "kv_retrieval":
                    out.append(_kv_sample(length, depth, rng, sid, count_tokens, cache))
                else:
                    out.append(_needle_sample(task, length, depth, rng, sid, haystack, count_tokens, cache))
    return out


# ---------------------------------------------------------------------------------------------- RULER QA

RULER_QA_FILES = {"squad": "squad_v2_dev.json", "hotpotqa": "hotpotqa_dev_distractor_first500.json"}


@lru_cache(maxsize=4)
def _read_ruler_source(source: str, path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(questions, unique sorted paragraphs) exactly as RULER's ``read_squad`` / ``read_hotpotqa``."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if source == "squad":
        docs = sorted({p["context"] for d in data["data"] for p in d["paragraphs"]})
        index = {c: i for i, c in enumerate(docs)}
        qas = []
        for d in data["data"]:
            article = [index[p["context"]] for p in d["paragraphs"]]
            for p in d["paragraphs"]:
                own = index[p["context"]]
                for qa in p["qas"]:
                    if qa["is_impossible"]:  # RULER keeps answerable questions only
                        continue
                    qas.append(
                        {
                            "query": qa["question"],
                            "outputs": [a["text"] for a in qa["answers"]],
                            "context": [own],
                            "gold": [own],
                            "more": [i for i in article if i != own],
                        }
                    )
        return qas, docs
    docs = sorted({f"{t}\n{''.join(s)}" for d in data for t, s in d["context"]})
    index = {c: i for i, c in enumerate(docs)}
    qas = []
    for d in data:
        support = {t for t, _ in d["supporting_facts"]}
        qas.append(
            {
                "query": d["question"],
                "outputs": [d["answer"]],
                "context": [index[f"{t}\n{''.join(s)}"] for t, s in d["context"]],
                "gold": [index[f"{t}\n{''.join(s)}"] for t, s in d["context"] if t in support],
                "more": [],
            }
        )
    return qas, docs


RULER_COMMIT = "c3f5e3b4f87f97e048793bb510a3a6b19a46bf3a"  # NVIDIA/RULER, scripts/data/synthetic/qa.py


def make_ruler_qa(
    source: str,
    n_tokens: int,
    n_samples: int,
    seed: int = 42,
    count_tokens: TokenCounter | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
) -> list[Sample]:
    """RULER ``qa_1`` (squad) / ``qa_2`` (hotpotqa): question i's paragraph(s) hidden among distractors.

    As RULER's ``qa.py`` at :data:`RULER_COMMIT` builds them, with its random stream (``Random(seed)``, seed
    42 by default): the haystack size is found by binary search on question 0, between 10 documents and 3x
    the estimate from 10 documents, as the largest count whose prompt (with the " Answer:" prefix) plus 32
    answer tokens fits ``n_tokens``; each question then drops 10 documents at a time until its prompt fits.
    Distractors are first the other paragraphs of the same SQuAD article, then random ones; when more
    documents are asked for than the pool holds, the pool is repeated. The order is one fixed shuffle.
    Lengths are counted on RULER's ``base`` template (no chat template tokens). ``path`` reads another file
    of the same format, e.g. the full HotpotQA dev distractor set (the shared data holds its first 500 items).
    """
    if source not in RULER_QA_FILES:
        raise ValueError(f"unknown RULER QA source {source!r}; known: {', '.join(RULER_QA_FILES)}")
    default = Path(data_dir or DEFAULT_DATA_DIR) / "squad_hotpotqa" / RULER_QA_FILES[source]
    src = require_file(Path(path).expanduser() if path else default, "RULER QA")
    qas, docs = _read_ruler_source(source, str(src))
    if n_samples > len(qas):
        raise ValueError(f"{source} has {len(qas)} usable questions, {n_samples} requested")
    count = count_tokens or approx_token_count
    rng = random.Random(seed)
    step = 10

    def generate(index: int, num_docs: int) -> tuple[str, str, list[int]]:
        qa = qas[index]
        own, more = qa["context"], qa["more"]
        if num_docs < len(docs):
            if num_docs - len(own) > len(more):
                taken = set(own + more)
                extra = [i for i in range(len(docs)) if i not in taken]
                chosen = own + more + rng.sample(extra, max(0, num_docs - len(own) - len(more)))
            else:
                chosen = own + rng.sample(more, num_docs - len(own))
        else:  # the pool is too small: repeat it and cut to num_docs, as upstream
            chosen = (list(range(len(docs))) * -(-num_docs // len(docs)))[:num_docs]
        random.Random(seed).shuffle(chosen)
        context = "\n\n".join(RULER_DOCUMENT_TEMPLATE.format(i=i + 1, document=docs[d]) for i, d in enumerate(chosen))
        prompt = RULER_QA_TEMPLATE.replace("{context}", context, 1).replace("{query}", qa["query"], 1)
        return context, prompt + RULER_QA_ANSWER_PREFIX, chosen

    def total(index: int, num_docs: int) -> int:
        return count(generate(index, num_docs)[1]) + RULER_QA_MAX_NEW_TOKENS

    per_doc = count(generate(0, step)[1]) / step
    lo, hi, best = step, max(int(n_tokens / per_doc * 3), 2 * step), None
    while lo <= hi:  # binary search for the largest haystack that fits
        mid = (lo + hi) // 2
        if total(0, mid) <= n_tokens:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    num_docs = best if best is not None else step

    samples = []
    for index in range(n_samples):
        used = num_docs
        while True:
            try:
                context, prompt, chosen = generate(index, used)
                length = count(prompt) + RULER_QA_MAX_NEW_TOKENS
                if length <= n_tokens:
                    break
            except ValueError:  # too few documents for this question's gold set; RULER retries smaller
                pass
            if used <= step:  # upstream would loop forever here
                raise ValueError(f"{source} question {index} does not fit in {n_tokens} tokens")
            used -= step
        qa = qas[index]
        samples.append(
            Sample(
                id=f"ruler-qa-{source}-{n_tokens}-{index}",
                task=f"ruler-qa-{source}",
                context=context,
                question=qa["query"],
                answers=list(qa["outputs"]),
                meta={
                    "length": length,
                    "target_length": n_tokens,
                    "n_docs": len(chosen),
                    "gold_documents": sorted({chosen.index(g) + 1 for g in qa["gold"] if g in chosen}),
                    "prompt": prompt[: -len(RULER_QA_ANSWER_PREFIX)],
                    "answer_prefix": RULER_QA_ANSWER_PREFIX,
                    "ruler_task": "qa_1" if source == "squad" else "qa_2",
                    "ruler_commit": RULER_COMMIT,
                    "token_counter": "approx" if count_tokens is None else "caller",
                    "synthetic": True,
                },
            )
        )
    return samples
