"""Map-reduce for global questions over documents longer than the window ("summarise the book").

A global question needs evidence from everywhere: top-k RAG reads five chunks and long context cannot read a
document beyond what the model really reads (its effective window). So every section of the document is
asked the question (map), and the partial answers are combined in document order (reduce), recursively while
they do not fit one window, until one answer remains.

- Sections are runs of consecutive index chunks, so citations stay chunk ids and line ranges, packed up to a
  token budget that leaves room for the prompt and the map answer. A section never spans two documents.
- The map prompt puts the section first and the short instruction after it: the section is a prefix shared
  by every question on the document, so its KV state is reused (llama.cpp's disk store) by the next question.
- Everything is planned before the first call (sections, map calls, worst-case reduce calls), so a caller can
  refuse a document that would need too many calls before paying for any of them.

The functions here take a :class:`~chatqa.generation.Generator`, a token counter and chunk lists only, so the
packing, the recursion and the refusal are testable without the pipeline.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from chatqa.chunking import Chunk
from chatqa.errors import ContextTooLongError
from chatqa.generation import Generation, Generator
from chatqa.prompting import Prompt, format_chunks
from chatqa.routing import declined

Counter = Callable[[str], int]
NOTE_LABEL_TOKENS = 24  # "Part 12 of 240 (moby.txt, lines 10234-10390):" with margin, per note
SEPARATOR_TOKENS = 2  # the blank line between notes or chunks
SAFETY_TOKENS = 8  # text counted alone can gain a token or two where it meets the prompt around it
QUESTION_ALLOWANCE = 64  # the question's share of a prompt, rounded up to this: sections stay put across questions
# A question-less task (InfiniteBench En.Sum: "Summarize the following book." with an empty input) still needs a
# question in the map and combine prompts, whose instructions are about "the question"; without one the 0.5B was
# told to extract "facts that help answer the question" with no question in sight. The final prompt keeps the
# task's own wording (a benchmark's template), so the output format stays official.
SUMMARY_QUESTION = "What happens in this document, from beginning to end?"
NONE_ANSWER = re.compile(r"^\W*(none|nothing|n/?a)\b", re.IGNORECASE)


class MapReduceError(ContextTooLongError):
    """The document cannot be answered by map-reduce as configured (too many map calls, no room)."""


@dataclass(frozen=True)
class Section:
    index: int  # 0-based position in document order
    chunks: tuple[Chunk, ...]
    n_tokens: int  # exact count of ``text``
    text: str

    @property
    def doc_name(self) -> str:
        return self.chunks[0].doc_name

    @property
    def lines(self) -> tuple[int, int]:
        return self.chunks[0].line_start, self.chunks[-1].line_end

    def citation(self) -> dict[str, Any]:
        first, last = self.chunks[0].pages, self.chunks[-1].pages
        pages = [first[0], last[1]] if first and last else None  # paged documents (PDF)
        return {"chunk": self.chunks[0].id, "chunks": [c.id for c in self.chunks], "doc": self.doc_name,
                "lines": list(self.lines), "pages": pages, "section": self.index}  # fmt: skip


@dataclass(frozen=True)
class Note:
    """A partial answer: what sections ``first``..``last`` say about the question."""

    text: str
    first: int
    last: int
    label: str

    def render(self) -> str:
        return f"{self.label}:\n{self.text.strip()}"


@dataclass
class Plan:
    """What a map-reduce answer will cost, known before the first call."""

    sections: list[Section]
    window: int  # the window every call is kept inside (the effective one when calibrated)
    section_budget: int  # tokens of document text per map call
    notes_room: int  # tokens of notes one reduce call reads
    reduce_calls_max: int  # worst case: every map answer uses its whole budget
    reduce_levels_max: int
    direct: bool = False  # one section that fits with the answer budget: answered in one call, no map stage

    @property
    def map_calls(self) -> int:
        return 0 if self.direct else len(self.sections)

    def describe(self) -> str:
        if self.direct:
            return "the document fits one section: one call, no map stage"
        levels = "level" if self.reduce_levels_max == 1 else "levels"
        return (f"{len(self.sections)} sections of <= {self.section_budget:,} tokens: {self.map_calls} map calls, "
                f"at most {self.reduce_calls_max} reduce calls in {self.reduce_levels_max} {levels}")  # fmt: skip


@dataclass
class StageCost:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    seconds: float = 0.0  # wall time of the stage, including prompt building and counting

    def add(self, gen: Generation) -> None:
        self.calls += 1
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens
        self.cached_tokens += gen.cached_tokens
        self.prefill_s += gen.prefill_s
        self.decode_s += gen.decode_s

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class Result:
    text: str
    plan: Plan
    partials: list[dict[str, Any]]  # every map answer, in document order, and whether it was kept
    cited: list[Section]  # the sections whose map answer reached the reduce
    reduce_levels: int
    stages: dict[str, StageCost] = field(default_factory=dict)
    finish_reason: str = "stop"
    final_prompt: str = ""  # what the last call read (its hash tells benchmarks two answers read the same)

    def usage(self) -> dict[str, Any]:
        return {"map_calls": self.stages["map"].calls, "reduce_calls": self.stages["reduce"].calls,
                "reduce_levels": self.reduce_levels, "sections": len(self.plan.sections),
                "stages": {k: v.to_dict() for k, v in self.stages.items()}}  # fmt: skip

    def summary(self) -> str:
        """One line for the answer's reason: what it cost, stage by stage."""
        m, r = self.stages["map"], self.stages["reduce"]
        return (f"{m.calls} map calls ({m.prompt_tokens:,} prompt tokens, {m.cached_tokens:,} cached; "
                f"{m.seconds:.1f}s), {r.calls} reduce calls in {self.reduce_levels} level(s) "
                f"({r.prompt_tokens:,} prompt tokens; {r.seconds:.1f}s)")  # fmt: skip


class Prompts(Protocol):
    """The three prompts of map-reduce. ``map`` must put ``section`` before the question (its prefix is
    reused across questions); ``final`` writes the answer the user sees, in the route's usual format."""

    def map(self, section: str, question: str) -> Prompt: ...

    def combine(self, notes: str, question: str) -> Prompt: ...

    def final(self, notes: str, question: str, *, are_notes: bool = True) -> Prompt: ...


# -- planning (pure) ---------------------------------------------------------------------------------------
def asked(question: str) -> str:
    """The question the map and combine prompts ask: the user's, or :data:`SUMMARY_QUESTION` when empty."""
    return question if question.strip() else SUMMARY_QUESTION


def overheads(prompts: Prompts, count: Counter, question: str) -> tuple[int, int]:
    """Prompt tokens around a section (map) and around the notes (reduce), for ``question``.

    The question's share is rounded up to a multiple of :data:`QUESTION_ALLOWANCE`, so the sections, and with
    them the KV prefixes worth reusing, are the same for every ordinary question on a document."""
    q = QUESTION_ALLOWANCE * max(1, math.ceil(count(asked(question)) / QUESTION_ALLOWANCE))
    reduce = max(count(prompts.combine("", "").text), count(prompts.final("", "").text))
    return count(prompts.map("", "").text) + q, reduce + q


def pack_sections(chunks: Sequence[Chunk], budget: int, count: Counter) -> list[Section]:
    """Consecutive chunks, greedily, while the joined text fits ``budget`` tokens; document order kept.

    The index's chunks are the unit (citations must match RAG's), so a chunk larger than the budget is an error
    that names the fix rather than a silent cut."""
    if budget < 1:
        raise MapReduceError(f"no room for a document section (budget {budget} tokens): raise the window")
    big = next((c for c in chunks if c.n_tokens > budget), None)
    if big is not None:
        raise MapReduceError(
            f"chunk {big.id} has {big.n_tokens:,} tokens, more than a map section can hold ({budget:,}); "
            f"use --chunk-tokens {budget} or less"
        )
    sections: list[Section] = []
    i = 0
    while i < len(chunks):
        end, estimate = i + 1, chunks[i].n_tokens
        while end < len(chunks) and chunks[end].doc == chunks[i].doc:
            estimate += SEPARATOR_TOKENS + chunks[end].n_tokens
            if estimate > budget:
                break
            end += 1
        text = format_chunks(chunks[i:end])
        n = count(text)
        while n > budget and end - i > 1:  # the estimate was short at a join: give the last chunk back
            end -= 1
            text = format_chunks(chunks[i:end])
            n = count(text)
        sections.append(Section(len(sections), tuple(chunks[i:end]), n, text))
        i = end
    return sections


def reduce_schedule(n_notes: int, note_tokens: int, combined_tokens: int, room: int) -> list[int]:
    """Reduce calls per level in the worst case (every note at its full budget); the last level is 1 call.

    Each call reads as many whole notes as fit ``room``; at least two must fit, or the recursion would not
    shrink (that is checked by :func:`plan`)."""
    calls: list[int] = []
    n, size = n_notes, note_tokens
    while True:
        per_call = max(1, room // (size + SEPARATOR_TOKENS))
        level = math.ceil(n / per_call)
        calls.append(level)
        if level <= 1:
            return calls
        if per_call < 2:
            raise MapReduceError("a reduce call cannot read two notes: raise the window or lower the budgets")
        n, size = level, combined_tokens


def plan(
    chunks: Sequence[Chunk],
    count: Counter,
    *,
    window: int,
    map_overhead: int,
    reduce_overhead: int,
    map_budget: int,
    reduce_budget: int,
    answer_budget: int,
    section_tokens: int | None = None,
    max_map_calls: int | None = None,
) -> Plan:
    """Cut the document into sections and bound the reduce; refuse before any compute when it cannot work.

    ``window`` is what each call may use (prompt + answer); the overheads are the prompts' own tokens with an
    empty section or empty notes. ``section_tokens`` caps a section below what the window allows."""
    room = window - map_overhead - map_budget - SAFETY_TOKENS
    budget = room if section_tokens is None else min(room, section_tokens)
    sections = pack_sections(chunks, budget, count)
    if max_map_calls is not None and len(sections) > 1 and len(sections) > max_map_calls:
        total = sum(s.n_tokens for s in sections)
        raise MapReduceError(
            f"map-reduce needs {len(sections)} map calls for this document ({total:,} tokens in sections of "
            f"<= {budget:,}), more than --max-map-calls {max_map_calls}; raise the limit or use --mode rag"
        )
    notes_room = window - reduce_overhead - max(reduce_budget, answer_budget) - SAFETY_TOKENS
    if len(sections) == 1 and sections[0].n_tokens <= notes_room:  # the final prompt can read the section itself
        return Plan(sections, window, budget, notes_room, 1, 1, direct=True)
    note, combined = map_budget + NOTE_LABEL_TOKENS, reduce_budget + NOTE_LABEL_TOKENS
    if notes_room < 2 * (max(note, combined) + SEPARATOR_TOKENS):
        raise MapReduceError(
            f"a reduce call has room for {max(notes_room, 0):,} tokens of notes, less than two answers of "
            f"{max(map_budget, reduce_budget)} tokens: lower the answer budget or raise the window ({window:,})"
        )
    calls = reduce_schedule(len(sections), note, combined, notes_room)
    return Plan(sections, window, budget, notes_room, sum(calls), len(calls))


# -- executing ---------------------------------------------------------------------------------------------
def kept(answer: str) -> bool:
    """A map answer worth passing on: not empty, not NONE, not a refusal ("the passage does not mention")."""
    return bool(answer.strip()) and not NONE_ANSWER.match(answer) and not declined(answer)


def _label(sections: Sequence[Section], first: int, last: int) -> str:
    a, b = sections[first], sections[last]
    where = f"{a.doc_name}, " if len({s.doc_name for s in sections}) > 1 else ""
    part = f"Part {first + 1}" if first == last else f"Parts {first + 1}-{last + 1}"
    return f"{part} of {len(sections)} ({where}lines {a.lines[0]}-{b.lines[1]})"


def group_notes(notes: Sequence[Note], room: int, count: Counter) -> list[list[Note]]:
    """Consecutive notes per reduce call, as many as fit ``room`` tokens (always at least one)."""
    groups: list[list[Note]] = []
    used = 0
    for note in notes:
        size = count(note.render()) + SEPARATOR_TOKENS
        if groups and used + size <= room:
            groups[-1].append(note)
            used += size
        else:
            groups.append([note])
            used = size
    return groups


def _call(generator: Generator, prompt: Prompt, budget: int, cost: StageCost, *, reuse_prefix: bool = False,
          on_text: Callable[[str], None] | None = None) -> Generation:  # fmt: skip
    prefix = prompt.text[: prompt.context_chars] if reuse_prefix and prompt.context_chars else None
    gen = generator.generate(prompt.text, budget, prompt.stop, on_text, prefix=prefix)
    cost.add(gen)
    return gen


def run(
    generator: Generator,
    the_plan: Plan,
    question: str,
    prompts: Prompts,
    *,
    map_budget: int,
    reduce_budget: int,
    answer_budget: int,
    count: Counter,
    on_map: Callable[[int, int], None] | None = None,
    on_text: Callable[[str], None] | None = None,
) -> Result:
    """Map every section, then reduce the kept answers in document order until one call can read them all.

    ``on_map(done, total)`` reports map progress; ``on_text`` streams the final answer only."""
    sections = the_plan.sections
    stages = {"map": StageCost(), "reduce": StageCost()}
    if the_plan.direct:  # nothing to combine: the one section is the whole document and fits the final prompt
        t0 = time.perf_counter()
        prompt = prompts.final(sections[0].text, question, are_notes=False)
        gen = _call(generator, prompt, answer_budget, stages["reduce"], reuse_prefix=True, on_text=on_text)
        stages["reduce"].seconds = time.perf_counter() - t0
        partial = {"section": 0, "lines": list(sections[0].lines), "answer": gen.text, "kept": True}
        return Result(gen.text, the_plan, [partial], list(sections), 0, stages, gen.finish_reason, prompt.text)

    t0 = time.perf_counter()
    partials: list[dict[str, Any]] = []
    notes: list[Note] = []
    for s in sections:
        gen = _call(generator, prompts.map(s.text, asked(question)), map_budget, stages["map"], reuse_prefix=True)
        keep = kept(gen.text)
        partials.append({"section": s.index, "doc": s.doc_name, "lines": list(s.lines), "answer": gen.text,
                         "kept": keep})  # fmt: skip
        if keep:
            notes.append(Note(gen.text, s.index, s.index, _label(sections, s.index, s.index)))
        if on_map:
            on_map(s.index + 1, len(sections))
    stages["map"].seconds = time.perf_counter() - t0
    cited = [sections[n.first] for n in notes]
    if not notes:  # no section said anything: let the reduce see the refusals rather than nothing
        notes = [Note(p["answer"] or "NONE", i, i, _label(sections, i, i)) for i, p in enumerate(partials)]

    t0 = time.perf_counter()
    levels = 0
    while True:
        groups = group_notes(notes, the_plan.notes_room, count)
        if len(groups) == 1:
            notes_text = "\n\n".join(n.render() for n in groups[0])
            final = prompts.final(notes_text, question)
            gen = _call(generator, final, answer_budget, stages["reduce"], on_text=on_text)
            levels += 1
            break
        if len(groups) >= len(notes):  # the plan's room check makes this unreachable; never loop forever
            raise MapReduceError("reduce cannot shrink the notes: each call holds only one of them")
        combined: list[Note] = []
        for g in groups:
            notes_text = "\n\n".join(n.render() for n in g)
            out = _call(generator, prompts.combine(notes_text, asked(question)), reduce_budget, stages["reduce"])
            first, last = g[0].first, g[-1].last
            combined.append(Note(out.text or "NONE", first, last, _label(sections, first, last)))
        notes = combined
        levels += 1
    stages["reduce"].seconds = time.perf_counter() - t0
    return Result(gen.text, the_plan, partials, cited, levels, stages, gen.finish_reason, final.text)
