"""Map-reduce as pure logic: section packing, the reduce recursion and the refusals.

A FAKE generator (scripted, deterministic) and a whitespace token counter stand in for the model here, so
the arithmetic can be checked exactly; tests/test_mapreduce_e2e.py runs the same code on a real model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from chatqa.chunking import Chunk
from chatqa.config import Config, ConfigError, GeneratorConfig
from chatqa.generation import Generation, Generator
from chatqa.mapreduce import (
    SUMMARY_QUESTION,
    MapReduceError,
    Plan,
    kept,
    overheads,
    pack_sections,
    plan,
    reduce_schedule,
    run,
)
from chatqa.prompting import COMBINE_INSTRUCTION, MAP_INSTRUCTION, MAP_NONE, MapReducePrompts


def count(text: str) -> int:
    return len(text.split())


class WordTokenizer:
    """A whitespace 'tokenizer' so token budgets are easy to reason about in assertions."""

    id = "words"

    def encode(self, text: str) -> list[int]:
        return list(range(count(text)))

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join("w" for _ in ids)

    def count(self, text: str) -> int:
        return count(text)


class FakeGenerator(Generator):
    """Scripted: ``reply(prompt, budget)`` decides the answer; every call is recorded."""

    def __init__(self, reply: Callable[[str, int], str], window: int = 10_000) -> None:
        self.config = GeneratorConfig(context_window=window)
        self.tokenizer = WordTokenizer()
        self.reply = reply
        self.calls: list[dict] = []

    def generate(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = (),
                 on_text: Callable[[str], None] | None = None, prefix: str | None = None) -> Generation:  # fmt: skip
        self.check_fits(count(prompt), max_new_tokens)
        text = " ".join(self.reply(prompt, max_new_tokens).split()[:max_new_tokens])
        self.calls.append({"prompt": prompt, "budget": max_new_tokens, "prefix": prefix})
        if on_text:
            on_text(text)
        return Generation(text, count(prompt), count(text), 0.001, 0.001)


def make_chunks(sizes: Sequence[int], docs: Sequence[int] | None = None) -> list[Chunk]:
    chunks, line = [], 1
    for i, n in enumerate(sizes):
        d = docs[i] if docs else 0
        text = " ".join(f"c{i}w{j}" for j in range(n))
        chunks.append(Chunk(i, d, f"doc{d}.txt", 0, len(text), line, line + 9, n, text))
        line += 10
    return chunks


PROMPTS = MapReducePrompts("completion")


def section_ids(prompt: str) -> list[int]:
    return sorted({int(m) for m in re.findall(r"\bc(\d+)w", prompt)})


# -- sections ----------------------------------------------------------------------------------------------
def test_sections_pack_consecutive_chunks_in_order_within_the_budget() -> None:
    chunks = make_chunks([30, 30, 30, 50, 10, 10, 10, 60])
    sections = pack_sections(chunks, 70, count)
    # joins are estimated at 2 tokens each: 50 + 10 + 10 with two joins (74) would not fit
    assert [[c.id for c in s.chunks] for s in sections] == [[0, 1], [2], [3, 4], [5, 6], [7]]
    assert all(s.n_tokens <= 70 for s in sections)
    assert [c.id for s in sections for c in s.chunks] == list(range(8))  # every chunk once, in order
    assert sections[2].citation() == {"chunk": 3, "chunks": [3, 4], "doc": "doc0.txt", "lines": [31, 50],
                                      "pages": None, "section": 2}  # fmt: skip


def test_sections_never_span_two_documents() -> None:
    chunks = make_chunks([10, 10, 10, 10], docs=[0, 0, 1, 1])
    sections = pack_sections(chunks, 1000, count)
    assert [s.doc_name for s in sections] == ["doc0.txt", "doc1.txt"]
    assert [len(s.chunks) for s in sections] == [2, 2]


def test_a_chunk_larger_than_a_section_is_refused_with_the_fix() -> None:
    with pytest.raises(MapReduceError, match=r"chunk 1 has 90 tokens.*--chunk-tokens 70"):
        pack_sections(make_chunks([10, 90]), 70, count)


def test_sections_do_not_move_with_the_question_length() -> None:
    """Same sections for a short and a longer question: their KV prefixes can be reused by the next one."""
    chunks = make_chunks([40] * 12)
    kw = {"window": 300, "map_budget": 20, "reduce_budget": 20, "answer_budget": 20}

    def sections_for(question: str) -> Plan:
        mo, ro = overheads(PROMPTS, count, question)
        return plan(chunks, count, map_overhead=mo, reduce_overhead=ro, **kw)

    a, b = sections_for("Who narrates?"), sections_for("How does the story end, and who is left alive?")
    assert [s.chunks for s in a.sections] == [s.chunks for s in b.sections]


# -- planning and refusals ---------------------------------------------------------------------------------
def test_reduce_schedule_counts_calls_per_level() -> None:
    assert reduce_schedule(4, 10, 10, 100) == [1]  # 4 notes of 12 fit 100
    assert reduce_schedule(20, 30, 30, 100) == [7, 3, 1]  # 3 notes per call: 20 -> 7 -> 3 -> 1
    with pytest.raises(MapReduceError, match="two notes"):
        reduce_schedule(5, 60, 60, 100)


def test_too_many_map_calls_are_refused_before_any_call() -> None:
    gen = FakeGenerator(lambda p, b: "x")
    chunks = make_chunks([100] * 10)
    with pytest.raises(MapReduceError, match=r"needs 10 map calls.*more than --max-map-calls 4"):
        plan(chunks, count, window=200, map_overhead=10, reduce_overhead=10, map_budget=20, reduce_budget=20,
             answer_budget=20, max_map_calls=4)  # fmt: skip
    assert gen.calls == []
    ok = plan(chunks, count, window=200, map_overhead=10, reduce_overhead=10, map_budget=20, reduce_budget=20,
              answer_budget=20, max_map_calls=10)  # fmt: skip
    assert ok.map_calls == 10


def test_no_room_for_two_notes_is_refused() -> None:
    with pytest.raises(MapReduceError, match="room for .* tokens of notes"):
        plan(make_chunks([50] * 4), count, window=120, map_overhead=10, reduce_overhead=10, map_budget=40,
             reduce_budget=40, answer_budget=40)  # fmt: skip


# -- running -----------------------------------------------------------------------------------------------
def verbose(prompt: str, budget: int) -> str:
    """A map answer that uses its whole budget: names the chunks it saw, then filler."""
    ids = section_ids(prompt)
    return " ".join([f"saw{i}" for i in ids] + ["note"] * budget)


def test_reduce_recurses_when_the_notes_do_not_fit_one_window() -> None:
    chunks = make_chunks([200] * 12)
    mo, ro = overheads(PROMPTS, count, "What happens?")
    p = plan(chunks, count, window=400, map_overhead=mo, reduce_overhead=ro, map_budget=30, reduce_budget=30,
             answer_budget=30)  # fmt: skip
    assert p.map_calls == 12 and p.reduce_levels_max >= 2
    gen = FakeGenerator(verbose, window=400)
    res = run(gen, p, "What happens?", PROMPTS, map_budget=30, reduce_budget=30, answer_budget=30, count=count)
    maps = gen.calls[:12]
    assert all(MAP_INSTRUCTION in c["prompt"] for c in maps)
    combines = [c for c in gen.calls if COMBINE_INSTRUCTION in c["prompt"]]
    assert [section_ids(c["prompt"]) for c in maps] == [[i] for i in range(12)]  # one section each, in order
    assert len(combines) >= 2 and res.reduce_levels >= 2  # the notes did not fit one call
    assert res.reduce_levels <= p.reduce_levels_max and res.stages["reduce"].calls <= p.reduce_calls_max
    assert res.stages["reduce"].calls == len(combines) + 1 and res.stages["map"].calls == 12
    first_level = [re.findall(r"Part (\d+) of 12", c["prompt"]) for c in combines]
    parts = [int(x) for group in first_level for x in group]
    assert parts[:12] == list(range(1, 13))  # each note read once, in document order
    assert all(count(c["prompt"]) + c["budget"] <= 400 for c in gen.calls)  # nothing overflowed the window
    assert "Parts 1-" in gen.calls[-1]["prompt"]  # the final call reads combined notes
    assert res.usage()["map_calls"] == 12 and res.usage()["reduce_levels"] == res.reduce_levels


def test_one_reduce_when_the_notes_fit() -> None:
    chunks = make_chunks([200] * 4)
    mo, ro = overheads(PROMPTS, count, "Who?")
    p = plan(chunks, count, window=400, map_overhead=mo, reduce_overhead=ro, map_budget=10, reduce_budget=10,
             answer_budget=10)  # fmt: skip
    gen = FakeGenerator(lambda prompt, b: "Alice" if "Part" in prompt else f"Alice {section_ids(prompt)}")
    res = run(gen, p, "Who?", PROMPTS, map_budget=10, reduce_budget=10, answer_budget=10, count=count)
    assert res.reduce_levels == 1 and res.stages["reduce"].calls == 1 and len(gen.calls) == len(p.sections) + 1
    assert res.text == "Alice"


def test_a_question_less_task_maps_and_combines_a_summary_question_and_keeps_its_own_final_prompt() -> None:
    """En.Sum has input "" and its template ("Summarize the following book.") is the final prompt; the map and
    combine prompts, written about "the question", ask :data:`SUMMARY_QUESTION` instead of nothing, and
    the sections are those of an ordinary question (the KV prefixes stay shared)."""
    chunks = make_chunks([200] * 12)
    prompts = MapReducePrompts("completion", template="Summarize the following book.\n\n{context}\n\nSummary:")
    assert overheads(prompts, count, "") == overheads(prompts, count, "Who?")
    mo, ro = overheads(prompts, count, "")
    p = plan(chunks, count, window=400, map_overhead=mo, reduce_overhead=ro, map_budget=30, reduce_budget=30,
             answer_budget=30)  # fmt: skip
    gen = FakeGenerator(verbose, window=400)
    run(gen, p, "", prompts, map_budget=30, reduce_budget=30, answer_budget=30, count=count)
    maps, rest = gen.calls[:12], gen.calls[12:]
    assert all(f"Question about the whole document: {SUMMARY_QUESTION}" in c["prompt"] for c in maps)
    combines = [c for c in rest if COMBINE_INSTRUCTION in c["prompt"]]
    assert combines and all(f"Question: {SUMMARY_QUESTION}" in c["prompt"] for c in combines)
    final = gen.calls[-1]["prompt"]
    assert final.startswith("Summarize the following book.") and SUMMARY_QUESTION not in final


def test_none_answers_are_dropped_and_not_cited() -> None:
    chunks = make_chunks([60] * 6)
    mo, ro = overheads(PROMPTS, count, "Who dies?")
    p = plan(chunks, count, window=200, map_overhead=mo, reduce_overhead=ro, map_budget=10, reduce_budget=10,
             answer_budget=10)  # fmt: skip

    def reply(prompt: str, budget: int) -> str:
        ids = section_ids(prompt)
        return "The captain dies." if ids == [4] else ("NONE" if ids else "The captain.")

    gen = FakeGenerator(reply, window=200)
    res = run(gen, p, "Who dies?", PROMPTS, map_budget=10, reduce_budget=10, answer_budget=10, count=count)
    assert [s.index for s in res.cited] == [4]
    assert [x["kept"] for x in res.partials] == [False, False, False, False, True, False]
    assert "Part 5 of 6" in gen.calls[-1]["prompt"] and "Part 1 of 6" not in gen.calls[-1]["prompt"]


def test_map_prompts_put_the_section_first_and_pass_it_as_the_reusable_prefix() -> None:
    chunks = make_chunks([60] * 3)
    mo, ro = overheads(PROMPTS, count, "Who?")
    p = plan(chunks, count, window=200, map_overhead=mo, reduce_overhead=ro, map_budget=10, reduce_budget=10,
             answer_budget=10)  # fmt: skip
    gen = FakeGenerator(lambda prompt, b: "x")
    run(gen, p, "Who?", PROMPTS, map_budget=10, reduce_budget=10, answer_budget=10, count=count)
    for call, section in zip(gen.calls, p.sections, strict=False):
        assert call["prefix"] is not None and call["prefix"].strip().endswith(section.text.strip())
        assert call["prompt"].index(section.text) < call["prompt"].index("Who?")
    assert gen.calls[-1]["prefix"] is None  # notes differ per question: nothing to keep


def test_map_prompts_offer_none_only_where_the_profile_says_so() -> None:
    """The embedded 0.5B answered NONE to every Moby-Dick section when offered it, so NONE is opt-in."""
    section = "Call me Ishmael. Some years ago I went to sea."
    plain = MapReducePrompts("completion").map(section, "Who narrates the story?").text
    offered = MapReducePrompts("completion", none_reply=True).map(section, "Who narrates the story?").text
    assert MAP_INSTRUCTION in plain and MAP_NONE not in plain
    assert MAP_NONE in offered
    for text in (plain, offered):  # the section stays first: its KV prefix serves every question
        assert text.index(section) < text.index("Who narrates the story?")


def test_none_reply_is_a_profile_setting() -> None:
    assert Config().mapreduce.none_reply is False
    assert Config().replace(**{"mapreduce.none_reply": True}).mapreduce.none_reply is True
    with pytest.raises(ConfigError):
        Config().replace(**{"mapreduce.none_reply": "sometimes"})


def test_a_document_of_one_section_is_one_call() -> None:
    p = plan(make_chunks([20, 20]), count, window=400, map_overhead=20, reduce_overhead=20, map_budget=10,
             reduce_budget=10, answer_budget=10)  # fmt: skip
    gen = FakeGenerator(lambda prompt, b: "done")
    res = run(gen, p, "Summarise.", PROMPTS, map_budget=10, reduce_budget=10, answer_budget=10, count=count)
    assert p.map_calls == 0 and len(gen.calls) == 1 and res.text == "done"
    assert "Notes taken" not in gen.calls[0]["prompt"]  # the document itself, not notes


def test_one_section_that_leaves_no_room_for_the_answer_is_mapped_first() -> None:
    """A section sized for a short map answer cannot also hold a long final answer: map it, then answer."""
    p = plan(make_chunks([200]), count, window=300, map_overhead=20, reduce_overhead=20, map_budget=10,
             reduce_budget=10, answer_budget=150)  # fmt: skip
    assert not p.direct and p.map_calls == 1
    gen = FakeGenerator(lambda prompt, b: "the gist", window=300)
    res = run(gen, p, "Summarise.", PROMPTS, map_budget=10, reduce_budget=10, answer_budget=150, count=count)
    assert len(gen.calls) == 2 and "Notes taken" in gen.calls[1]["prompt"] and res.reduce_levels == 1


@pytest.mark.parametrize(("answer", "keep"), [("NONE", False), ("None.", False), ("", False),
                         ("The passage does not mention it.", False), ("Ishmael narrates.", True)])  # fmt: skip
def test_kept(answer: str, keep: bool) -> None:
    assert kept(answer) is keep
