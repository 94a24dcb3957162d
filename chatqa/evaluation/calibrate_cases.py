"""The cases ``chatqa calibrate`` runs: official-template passkey prompts, LongEval line retrieval and a NoLiMa
non-literal needle, sized in the generator's own tokens, plus a prefill-speed probe for the runtime estimate.

Every case is a whole prompt of at most its tested length (template, context and answer budget included), run
long-context only: calibration measures what the model reads, never what retrieval finds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from chatqa.config import Config
from chatqa.evaluation import templates as tpl
from chatqa.generation import Generator

ATTENTION_TOKENS = 29_000  # prefill s/token grows ~(1 + L / this): Gemma 270M's 511 -> 242 tok/s from 2K to 32K
DECODE_TOK_S = 40.0  # a conservative CPU decode speed for the estimate (measured 36-79 tok/s)
MARGIN = 4  # tokens kept free for BOS and merges at the context's edges
PASSKEY_OPENING = tpl.INFINITEBENCH_CHAT_OPENINGS["passkey"]  # the open-model ending, as the reply's start in chat

# NoLiMa (arXiv 2502.05167): the needle and the question share no content word, so finding the needle takes a
# one-hop association (Semper Opera -> Dresden) instead of string matching, which passkey and LongEval allow.
NOLIMA_TEMPLATE = (
    "You will answer a question based on the following book snippet:\n\n{haystack}\n\nUse the information provided "
    "in the book snippet to answer the question. Your answer should be short and based on either explicitly stated "
    "facts or strong, logical inferences.\n\nQuestion: {question}\n\nReturn only the final answer with no "
    "additional explanation or reasoning."
)
NOLIMA_PAIRS = (  # (needle, question): landmark in the needle, its city only in the question
    ("Actually, {name} lives next to the Semper Opera.", "Which character has been to Dresden?"),
    ("Actually, {name} lives next to the Alte Pinakothek.", "Which character has been to Munich?"),
    ("Actually, {name} lives next to the Kiasma museum.", "Which character has been to Helsinki?"),
    ("Actually, {name} lives next to the Sagrada Familia.", "Which character has been to Barcelona?"),
    ("Actually, {name} lives next to the Stephansdom.", "Which character has been to Vienna?"),
    ("Actually, {name} lives next to the Belem Tower.", "Which character has been to Lisbon?"),
)
NOLIMA_NAMES = ("Yuki", "Stuart", "Katie", "Caspar", "Megan", "Veronica", "Calvin", "Mandy", "Rodney", "Ingrid")
NOLIMA_BUDGET = 24  # a name, or a sentence ending in one ("The character who has been to Lisbon is Yuki")
NOLIMA_BASE_LENGTH = 1024  # the short context whose score the relative threshold is taken from (NoLiMa: <= 1K)
NOLIMA_HAYSTACK = "gutenberg/pg1342.txt"  # real prose (NoLiMa uses books); none of the names or cities occur in it


@dataclass
class Case:
    task: str  # passkey | longeval | nolima
    length: int  # the tested length this case counts for
    prompt: str
    gold: str
    max_new_tokens: int
    stop: list[str]
    tokens: int  # prompt tokens, BOS included
    where: str  # needle depth, or the LongEval file and line


def _wrap(generator: Generator, fmt: str, text: str, opening: str = "") -> str:
    """The benchmark text as one user turn in the profile's prompt format, the reply started with ``opening``.

    RULER's convention: the answer prefix goes after the chat template, so a chat model spends its few answer
    tokens (passkey: 6) on the answer instead of restating the question ("The pass key is the name", measured
    on SmolLM2). Completion prompts already end with the opening in their template."""
    if fmt in ("chat", "chatqa"):
        return tpl.wrap_prompt(text, fmt, generator.render_chat, answer_prefix=tpl.reply_opening(opening, fmt))
    return text


def _tokens(generator: Generator, prompt: str) -> int:
    return len(generator.tokenizer.encode(prompt)) + 1


def passkey_cases(generator: Generator, config: Config, lengths: list[int], depths: list[float], n: int) -> list[Case]:
    """InfiniteBench passkey: the open (completion) templates for base models, the chat set otherwise."""
    from chatqa.evaluation.samples import Sample
    from chatqa.evaluation.synthetic import make_passkey
    from chatqa.evaluation.templates import (
        INFINITEBENCH_MAX_NEW_TOKENS,
        INFINITEBENCH_OPEN_TEMPLATES,
        INFINITEBENCH_TEMPLATES,
        render_infinitebench,
    )

    fmt = config.generator.prompt_format
    table = INFINITEBENCH_OPEN_TEMPLATES if fmt == "completion" else INFINITEBENCH_TEMPLATES
    budget = INFINITEBENCH_MAX_NEW_TOKENS["passkey"]

    def prompt_of(sample: Sample) -> str:
        return _wrap(generator, fmt, render_infinitebench(sample, table), PASSKEY_OPENING)

    empty = Sample("probe", "passkey", "", "What is the pass key?", [])
    overhead = _tokens(generator, prompt_of(empty))
    cases = []
    for length in lengths:
        room = length - overhead - budget - MARGIN
        if room < 64:
            raise ValueError(f"length {length} leaves no room for a passkey context (template {overhead} tokens)")
        for depth in depths:
            for i in range(n):
                s = make_passkey(room, depth, f"calibrate:{length}:{depth}:{i}", count_tokens=generator.tokenizer.count)
                prompt = prompt_of(s)
                cases.append(Case("passkey", length, prompt, s.answers[0], budget, [], _tokens(generator, prompt),
                                  f"depth {depth:g}"))  # fmt: skip
    return cases


def longeval_cases(generator: Generator, config: Config, lengths: list[int], n: int) -> list[Case]:
    """LongEval lines (``n`` per file from ../shared/data/longeval/lines, when present); each case counts for
    the smallest tested length that holds it. Completion prompts end with the answer's opening, as the open
    passkey template does, since a base model does not answer a bare question."""
    from chatqa.evaluation.datasets import load_longeval_lines
    from chatqa.evaluation.templates import (
        LONGEVAL_MAX_NEW_TOKENS,
        LONGEVAL_OPEN_STOPS,
        longeval_open_ending,
        render_longeval,
    )

    try:
        samples = load_longeval_lines(limit=n)
    except FileNotFoundError:
        return []
    fmt = config.generator.prompt_format
    budget = LONGEVAL_MAX_NEW_TOKENS["longeval-lines"]
    cases = []
    for s in samples:
        if s.meta["length"] > config.generator.context_window:  # token_size (LLaMA tokens) beyond the window
            continue
        text, opening = render_longeval(s), longeval_open_ending(s)
        stop = list(LONGEVAL_OPEN_STOPS["longeval-lines"])
        if fmt == "completion":
            text, opening = text + opening, ""
        prompt = _wrap(generator, fmt, text, opening.strip())
        tokens = _tokens(generator, prompt)
        length = min((x for x in lengths if x >= tokens + budget), default=None)
        if length is not None:
            where = f"{s.meta['num_lines']} lines #{s.meta['line']}"
            cases.append(Case("longeval", length, prompt, s.answers[0], budget, stop, tokens, where))
    return cases


def _nolima_haystack() -> str:
    from chatqa.evaluation.datasets import load_gutenberg
    from chatqa.evaluation.samples import DEFAULT_DATA_DIR
    from chatqa.evaluation.synthetic import PASSKEY_NOISE

    try:
        return load_gutenberg(DEFAULT_DATA_DIR / NOLIMA_HAYSTACK)
    except FileNotFoundError:  # without ../shared the probe still runs, on the passkey noise (easier: say so)
        return PASSKEY_NOISE * 400


def nolima_cases(generator: Generator, config: Config, lengths: list[int], depths: list[float], n: int) -> list[Case]:
    """NoLiMa-style cases at each tested length and at the short base length (for the relative threshold):
    a stretch of a novel from a seeded offset, cut to fit in the model's tokens, the needle spliced in at a
    sentence boundary at each depth; the gold is the character's name."""
    import random

    from chatqa.evaluation.synthetic import _nearest_boundary, _splice

    fmt = config.generator.prompt_format
    book = _nolima_haystack()

    def prompt_of(haystack: str, question: str) -> str:
        text = NOLIMA_TEMPLATE.format(haystack=haystack, question=question)
        return _wrap(generator, fmt, text + ("\n\nAnswer:" if fmt == "completion" else ""))

    overhead = _tokens(generator, prompt_of("", NOLIMA_PAIRS[0][1])) + 16  # the longest needle's tokens
    # A chat model's reply starts with the answer, so its first line is the answer. A base model continues
    # "Answer:" with a line break first (Gemma 3 270M: 7 of 8 answers were empty under a "\n" stop); the name
    # is then looked for in its whole answer budget, which holds a name and little else.
    stop = [] if fmt == "completion" else ["\n"]
    cases = []
    for length in sorted({NOLIMA_BASE_LENGTH, *lengths}):
        room = length - overhead - NOLIMA_BUDGET - MARGIN
        for depth in depths:
            for i in range(n):
                rng = random.Random(f"nolima:{length}:{depth}:{i}")
                needle, question = NOLIMA_PAIRS[rng.randrange(len(NOLIMA_PAIRS))]
                name = NOLIMA_NAMES[rng.randrange(len(NOLIMA_NAMES))]
                start = _nearest_boundary(book, rng.randrange(max(1, len(book) - room * 6)))
                ids = generator.tokenizer.encode(book[start : start + room * 6])[:room]
                hay = generator.tokenizer.decode(ids)
                hay = _splice(hay, _nearest_boundary(hay, int(len(hay) * depth)), needle.format(name=name))
                prompt = prompt_of(hay, question)
                cases.append(Case("nolima", length, prompt, name, NOLIMA_BUDGET, stop, _tokens(generator, prompt),
                                  f"depth {depth:g}"))  # fmt: skip
    return cases


def build_cases(
    generator: Generator,
    config: Config,
    lengths: list[int],
    depths: list[float],
    n: int,
    longeval: bool,
    nolima: bool = True,
) -> list[Case]:
    cases = passkey_cases(generator, config, lengths, depths, n)
    if longeval:
        cases += longeval_cases(generator, config, lengths, n)
    if nolima:
        cases += nolima_cases(generator, config, lengths, depths, n)
    return sorted(cases, key=lambda c: c.length)  # short first: early failures show up early


def measure_prefill(generator: Generator) -> float:
    """Prefill tokens/s on a ~500-token prompt (the first call also warms the model up)."""
    from chatqa.evaluation.synthetic import PASSKEY_NOISE

    gen = generator.generate(PASSKEY_NOISE * 20, 1)
    return gen.prompt_tokens / max(gen.prefill_s, 1e-3)


def estimate(cases: list[Case], tok_s: float) -> float:
    """Seconds for ``cases``: prefill slowed by attention as prompts grow, plus the full answer budget."""
    return sum(c.tokens / tok_s * (1 + c.tokens / ATTENTION_TOKENS) + c.max_new_tokens / DECODE_TOK_S for c in cases)


def run_case(generator: Generator, case: Case) -> dict[str, Any]:
    from chatqa.evaluation.metrics import score

    start = time.perf_counter()
    gen = generator.generate(case.prompt, case.max_new_tokens, case.stop)
    if case.task == "nolima":
        got = float(re.search(rf"\b{re.escape(case.gold)}\b", gen.text, re.IGNORECASE) is not None)
    else:
        got = score("infinitebench:passkey" if case.task == "passkey" else "longeval:lines", gen.text, case.gold)
    return {
        "task": case.task,
        "length": case.length,
        "tokens": gen.prompt_tokens,
        "where": case.where,
        "gold": case.gold,
        "prediction": gen.text,
        "score": got,
        "seconds": round(time.perf_counter() - start, 2),
    }
