"""Deciding, per question, between RAG and long context (LC).

Pure logic on token counts and the question text, so the rules can be tested without a model:
- ``rag``: always top-k retrieval.
- ``long``: the whole document, or a clear refusal when it does not fit (truncation only on request).
- ``auto``: LC when the document fits the *effective* window; map-reduce for a global question ("summarise
  the book") over a longer document, since five chunks are the wrong evidence for it; RAG otherwise (ChatQA 2:
  LC wins under 32K, RAG above 100K).
- ``self-route`` (arXiv 2407.16833): RAG first; LC if the RAG step declines and the document fits. The decline
  is the answer's own words ("unanswerable", :func:`declined`) or, with ``routing.self_route_decline: judge``, a
  separate yes/no judgement of the retrieved context read from the model's next-token probabilities
  (:class:`Judgement`).
- ``map-reduce``: every window-sized section is asked, the partial answers are combined (chatqa.mapreduce).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatqa.errors import ContextTooLongError, InputError

MODES = ("rag", "long", "auto", "self-route", "map-reduce")

GLOBAL_QUESTION = re.compile(
    r"\b(summari[sz]e|summary|overall|main (?:theme|idea|point|argument|character)s?"
    r"|(?:whole|entire) (?:book|document|story|text|novel)|in general|outline"
    r"|key (?:themes|points|events)|what is (?:this|the) (?:book|document|text|story|novel) about"
    r"|how does (?:it|the (?:[\w-]+ ){0,3}(?:book|story|novel)) end|who narrates|who is the narrator"
    r"|(?:during|over|throughout) the (?:book|story|stories|novel)|(?:at|by) the end of the (?:book|story|novel)"
    r"|moves? through|(?:list|name) (?:all|every|each|three|some) )\b",
    re.IGNORECASE,
)
DECLINED = re.compile(
    r"\b(unanswerable|cannot be answered|can ?not (?:find|answer|be found)|not (?:mentioned|provided|stated|"
    r"found|given|enough information)|no (?:information|mention)|does not (?:say|mention|contain|provide)|"
    r"doesn't (?:say|mention|contain)|i don't know|unknown)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route:
    route: str  # "rag", "long" or "map-reduce"
    reason: str
    truncate: bool = False


def is_global(question: str) -> bool:
    return bool(GLOBAL_QUESTION.search(question))


def declined(answer: str) -> bool:
    """True when a RAG answer says the context was not enough (Self-Route's trigger); empty counts too."""
    return not answer.strip() or bool(DECLINED.search(answer))


def decide(
    mode: str,
    question: str,
    doc_tokens: int,
    window_room: int,
    effective_room: int | None = None,
    truncate: str | None = None,
) -> Route:
    """Choose a route. ``window_room`` is the window minus prompt overhead and the answer budget;
    ``effective_room`` the same computed from the calibrated effective window (None: same as window)."""
    effective_room = window_room if effective_room is None else min(effective_room, window_room)
    fits = doc_tokens <= window_room
    size = f"document {doc_tokens:,} tokens"
    if mode == "rag":
        return Route("rag", "forced: --mode rag")
    if mode == "long":
        if fits:
            return Route("long", f"forced: --mode long; {size} fits the window ({window_room:,})")
        if truncate == "middle":
            return Route("long", f"forced: --mode long; {size} > window ({window_room:,}), middle cut", True)
        raise ContextTooLongError(
            f"{size} does not fit the generator's window ({window_room:,} tokens left for the document); "
            "use --mode rag or auto, or --truncate middle"
        )
    if mode == "self-route":
        return Route("rag", "self-route: RAG first; long context only if the model declines")
    if mode == "map-reduce":
        return Route("map-reduce", f"forced: --mode map-reduce; {size}")
    if mode != "auto":
        raise InputError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
    if doc_tokens <= effective_room:
        return Route("long", f"{size} fits the effective window ({effective_room:,})")
    if is_global(question):
        if effective_room <= 0 and fits:  # a calibration that trusts no length: the nominal window it is
            return Route("long", f"global question; {size} fits the window ({window_room:,})")
        bound = "effective window" if effective_room > 0 else "window"
        room = effective_room if effective_room > 0 else window_room
        return Route("map-reduce", f"global question; {size} exceeds the {bound} ({room:,}): map-reduce")
    if effective_room <= 0:
        why = "the calibrated effective window leaves no room for a document: long context is not trusted"
        return Route("rag", why)
    return Route("rag", f"{size} exceeds the effective window ({effective_room:,})")


@dataclass(frozen=True)
class Judgement:
    """Self-Route's judge: does the retrieved context hold the answer? ``p_yes`` is P(yes) / (P(yes) + P(no)) at
    the judge prompt's next token, so a model that spreads probability over other tokens ("The", "Based") is
    still read as a choice between the two; None when it gave neither any probability (a server's top-N)."""

    p_yes: float | None
    threshold: float

    @property
    def declined(self) -> bool:
        return self.p_yes is not None and self.p_yes < self.threshold

    def note(self) -> str:
        if self.p_yes is None:
            return "the judge gave neither yes nor no any probability; the RAG answer stands"
        if self.declined:
            return f"judge P(yes) {self.p_yes:.3f} < {self.threshold:g}: the retrieved context lacks the answer"
        return f"judge P(yes) {self.p_yes:.3f} >= {self.threshold:g}: the RAG answer stands"


def judge(p_yes: float, p_no: float, threshold: float) -> Judgement:
    """The judgement from the raw next-token probabilities of "yes" and "no"."""
    total = p_yes + p_no
    return Judgement(p_yes / total if total > 0 else None, threshold)


def fallback(answer: str, doc_tokens: int, window_room: int, judgement: Judgement | None = None) -> Route | None:
    """Self-Route's second step: LC when the RAG step declined and the document fits; else keep RAG. The decline
    is the judge's when there is one (the answer is then the plain RAG answer), else the answer's own words.
    ``window_room`` is the nominal window's room, not the effective one: after a decline LC is the only route
    left, and the effective window is a reliability bound, not a capacity (the default, calibrated to 1,024,
    found every passkey to 16K through this fallback; eval/results/README.md, "Passkey with the new default")."""
    if not (judgement.declined if judgement is not None else declined(answer)):
        return None
    why = judgement.note() if judgement is not None else "the RAG answer declined"
    if doc_tokens <= window_room:
        return Route("long", f"self-route: {why}; the document fits, so long context")
    return None


def cap_map_calls(route: Route, mode: str, map_calls: int, max_map_calls: int | None) -> Route:
    """``--max-map-calls``: a forced map-reduce is refused (by the planner, with the numbers); ``auto`` answers
    by RAG instead and says why, since it only chose map-reduce as the better of two affordable routes."""
    if route.route != "map-reduce" or max_map_calls is None or map_calls <= max_map_calls or mode != "auto":
        return route
    return Route("rag", f"{route.reason}, but it would need {map_calls} map calls (--max-map-calls "
                 f"{max_map_calls}): RAG")  # fmt: skip
