"""Routing rules as pure logic: token counts and question text in, a route and a reason out."""

from __future__ import annotations

import pytest

from chatqa.errors import ContextTooLongError, InputError
from chatqa.routing import Judgement, cap_map_calls, decide, declined, fallback, is_global, judge


def test_forced_modes() -> None:
    assert decide("rag", "q", 10, 100).route == "rag"
    assert decide("long", "q", 10, 100).route == "long"
    with pytest.raises(ContextTooLongError, match="does not fit.*--truncate middle"):
        decide("long", "q", 1000, 100)
    cut = decide("long", "q", 1000, 100, truncate="middle")
    assert cut.route == "long" and cut.truncate and "middle" in cut.reason


def test_auto_uses_effective_window_and_global_questions() -> None:
    assert decide("auto", "Who?", 500, 1000).route == "long"
    r = decide("auto", "Who?", 500, 1000, effective_room=400)
    assert r.route == "rag" and "effective window (400)" in r.reason
    # a global question over more than the model really reads: every section must be read, so map-reduce
    g = decide("auto", "Summarise the book.", 500, 1000, effective_room=400)
    assert g.route == "map-reduce" and "global" in g.reason and "effective window (400)" in g.reason
    too_big = decide("auto", "Summarise the book.", 5000, 1000)
    assert too_big.route == "map-reduce" and "global" in too_big.reason
    # a calibration that failed at every length (0): local questions go to RAG, global ones may still use LC
    none = decide("auto", "Who?", 10, 1000, effective_room=-300)
    assert none.route == "rag" and "not trusted" in none.reason
    assert decide("auto", "Summarise the book.", 10, 1000, effective_room=-300).route == "long"
    # an effective window larger than the real one cannot make a document fit
    assert decide("auto", "Who?", 1500, 1000, effective_room=4000).route == "rag"


def test_map_reduce_forced_and_capped() -> None:
    forced = decide("map-reduce", "Who?", 10, 1000)
    assert forced.route == "map-reduce" and "forced" in forced.reason
    g = decide("auto", "How does the novel end?", 50_000, 8000, effective_room=1800)
    # auto over the cap answers by RAG and says why; under it, or forced, the route stays (the planner refuses)
    capped = cap_map_calls(g, "auto", 40, 10)
    assert capped.route == "rag" and "40 map calls" in capped.reason and "--max-map-calls 10" in capped.reason
    assert cap_map_calls(g, "auto", 10, 10) == g and cap_map_calls(g, "auto", 40, None) == g
    assert cap_map_calls(forced, "map-reduce", 40, 10) == forced


def test_self_route_starts_with_rag_and_falls_back_only_when_declined_and_fitting() -> None:
    assert decide("self-route", "q", 10, 100).route == "rag"
    assert fallback("Josiah Wrenfield.", 10, 100) is None
    back = fallback("unanswerable", 10, 100)
    assert back is not None and back.route == "long"
    assert fallback("unanswerable", 1000, 100) is None  # cannot fit: keep the RAG answer


def test_the_judge_reads_yes_against_no_and_declines_below_its_threshold() -> None:
    # the raw probabilities need not sum to 1 (the model may start with another token): only their ratio counts
    assert judge(0.3, 0.1, 0.5).p_yes == pytest.approx(0.75)
    assert not judge(0.3, 0.1, 0.5).declined and judge(0.3, 0.1, 0.8).declined
    assert judge(0.02, 0.06, 0.5).declined and "0.250 < 0.5" in judge(0.02, 0.06, 0.5).note()
    silent = judge(0.0, 0.0, 0.5)  # neither word among a server's top log-probabilities: no verdict, keep RAG
    assert silent.p_yes is None and not silent.declined and "neither" in silent.note()
    assert Judgement(0.5, 0.5).declined is False  # the threshold itself keeps the answer


def test_a_judged_decline_falls_back_whatever_the_answer_says() -> None:
    no = judge(0.1, 0.9, 0.5)
    back = fallback("Josiah Wrenfield", 10, 100, no)  # the answer's words do not matter once a judge decides
    assert back is not None and back.route == "long" and "judge P(yes) 0.100 < 0.5" in back.reason
    assert fallback("Josiah Wrenfield", 1000, 100, no) is None  # declined, but LC cannot take over
    assert fallback("unanswerable", 10, 100, judge(0.9, 0.1, 0.5)) is None  # the judge said yes: RAG stands


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("unanswerable", True), ("The text does not mention it.", True), ("", True), ("I don't know", True),
     ("Josiah Wrenfield", False), ("41 locks", False), ("It was not until 1831.", False)],
)  # fmt: skip
def test_declined(answer: str, expected: bool) -> None:
    assert declined(answer) is expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [("Summarise the history of the canal.", True), ("What is the main theme?", True),
     ("What is this book about?", True), ("Who was the chief engineer?", False),
     ("How long is the tunnel?", False), ("Who narrates the story?", True), ("Who is the narrator?", True),
     ("What happens throughout the novel?", True),
     # factual questions that the old rule sent to map-reduce over a whole novel (eval/results novels-qa)
     ("What does the narrator of Moby-Dick ask to be called?", False),
     ("When was the restored canal reopened throughout?", False)],
)  # fmt: skip
def test_global_questions(question: str, expected: bool) -> None:
    assert is_global(question) is expected


def test_unknown_mode() -> None:
    with pytest.raises(InputError, match="unknown mode"):
        decide("fast", "q", 1, 2)
