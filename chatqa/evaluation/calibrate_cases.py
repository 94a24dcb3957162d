"""The cases ``chatqa calibrate`` runs: official-template passkey prompts and LongEval line retrieval, sized in
the generator's own tokens, plus a prefill-speed probe for the up-front runtime estimate.

Every case is a whole prompt of at most its tested length (template, context and answer budget included), run
long-context only: calibration measures what the model reads, never what retrieval finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chatqa.config import Config
from chatqa.generation import Generator

ATTENTION_TOKENS = 29_000  # prefill s/token grows ~(1 + L / this): Gemma 270M's 511 -> 242 tok/s from 2K to 32K
DECODE_TOK_S = 40.0  # a conservative CPU decode speed for the estimate (measured 36-79 tok/s)
MARGIN = 4  # tokens kept free for BOS and merges at the context's edges
PASSKEY_OPENING = "The pass key is"  # InfiniteBench's open-model ending, used as the reply's start in chat formats


@dataclass
class Case:
    task: str  # passkey | longeval
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
    if fmt == "chat":
        return generator.render_chat([{"role": "user", "content": text}]) + opening
    if fmt == "chatqa":
        from chatqa.prompting import CHATQA_SYSTEM

        return f"{CHATQA_SYSTEM}\n\nUser: {text}\n\nAssistant:" + (f" {opening}" if opening else "")
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


def build_cases(
    generator: Generator, config: Config, lengths: list[int], depths: list[float], n: int, longeval: bool
) -> list[Case]:
    cases = passkey_cases(generator, config, lengths, depths, n)
    if longeval:
        cases += longeval_cases(generator, config, lengths, n)
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
    metric = "infinitebench:passkey" if case.task == "passkey" else "longeval:lines"
    return {
        "task": case.task,
        "length": case.length,
        "tokens": gen.prompt_tokens,
        "where": case.where,
        "gold": case.gold,
        "prediction": gen.text,
        "score": score(metric, gen.text, case.gold),
        "seconds": round(time.perf_counter() - start, 2),
    }
