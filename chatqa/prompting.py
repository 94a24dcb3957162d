"""Prompt formats: ChatQA's own, a model's chat template, and plain completion for base models.

Every format puts the context before the question and the dialogue. That order is what ChatQA was trained
on, and it makes the document a shared prefix across questions, so its KV state can be reused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from chatqa.chunking import Chunk

CHATQA_SYSTEM = (
    "System: This is a chat between a user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions based on the context. The assistant "
    "should also indicate when the answer cannot be found in the context."
)
SHORT_ANSWER = "Answer the following question with a short span."
DECLINE = 'If the context does not contain the answer, reply with the single word "unanswerable".'
# Self-Route's judge (routing.self_route_decline: judge): asked in place of the question, over the same retrieved
# context, and read from the next token's probabilities of JUDGE_WORDS, never generated. On novels-qa the default
# 0.5B model, told to reply "unanswerable" (DECLINE), did so once in 111 answers (eval/results/README.md).
JUDGE = 'Does the context contain the answer to the question "{question}"? Answer yes or no.'
JUDGE_WORDS = ("yes", "no")
DECLINED_ANSWER = "unanswerable"  # what a judged decline answers when long context cannot take over (DECLINE's word)

Message = dict[str, str]
T = TypeVar("T")
PLACE = "\x00chatqa:context\x00"  # where a frame's context goes: no document, question or template holds NULs


@dataclass
class Prompt:
    text: str
    stop: list[str] = field(default_factory=list)
    context_chars: int = 0  # the prefix that is the same for every question on this context


@dataclass(frozen=True)
class Frame:
    """A prompt built once around a placeholder for its context, then filled by each route.

    The prompt's own tokens (everything but the context) decide how much document fits, so a question needs
    the frame before it knows its context; filling it is string concatenation, so measuring and answering
    read the same text without building the prompt twice."""

    parts: tuple[str, ...]  # the prompt split at the context's place(s)
    stop: tuple[str, ...]
    after: int | None  # characters after the context that still belong to the shared prefix; None: no prefix

    @classmethod
    def around(cls, prompt: Prompt, extra_stop: Sequence[str] = ()) -> Frame:
        """``prompt`` built with :data:`PLACE` as its context (any format, or a benchmark's template)."""
        parts = tuple(prompt.text.split(PLACE))
        after = prompt.context_chars - len(parts[0]) - len(PLACE) if len(parts) > 1 else None
        return cls(parts, tuple(dict.fromkeys([*prompt.stop, *extra_stop])), after)

    def fill(self, context: str) -> Prompt:
        prefix = 0 if self.after is None else len(self.parts[0]) + len(context) + self.after
        return Prompt(context.join(self.parts), list(self.stop), prefix)


def truncate_middle(tokens: Sequence[T], max_len: int) -> list[T]:
    """InfiniteBench's middle truncation: the question sits at both ends of its prompts, so keep both ends.
    The one cut used by ``--truncate middle`` and by the benchmark templates.

    Same slicing as ``truncate_input`` in the official ``eval_utils.py``: ``[: max_len // 2]`` plus
    ``[-max_len // 2 :]``, i.e. floor(max_len / 2) head and ceil(max_len / 2) tail tokens.
    """
    if max_len <= 0:
        # The official slice would return the whole input for 0 (``x[-0:]``); refuse instead.
        raise ValueError(f"max_len must be positive, got {max_len}")
    items = list(tokens)
    if len(items) <= max_len:
        return items
    return items[: max_len // 2] + items[-max_len // 2 :]


CUT_QUANTUM = 512


def shared_cut(room: int) -> int:
    """The length of ``--truncate middle``'s cut for a room of ``room`` tokens, rounded down to a multiple of 512.

    The room is the window minus the prompt, the question included, so a cut of exactly the room moved with
    the question's length: every question on a document got its own head and tail, and the KV state the first
    one stored never served the next (measured on Alice at 32K: the second question recomputed all of it, about
    19 minutes on the 2-core box). Rounding gives questions of similar length the same cut, for at most 511
    tokens of the document; small rooms are not rounded, where 511 tokens would be a large share."""
    return room - room % CUT_QUANTUM if room >= 4 * CUT_QUANTUM else room


def format_chunks(chunks: Sequence[Chunk]) -> str:
    """Chunks joined in the order given (callers pass document order), with a header when the doc changes."""
    parts: list[str] = []
    multi = len({c.doc for c in chunks}) > 1
    last_doc = None
    for chunk in chunks:
        if multi and chunk.doc != last_doc:
            parts.append(f"Document: {chunk.doc_name}")
            last_doc = chunk.doc
        parts.append(chunk.text.strip())
    return "\n\n".join(parts)


def format_documents(names: Sequence[str], texts: Sequence[str]) -> str:
    if len(texts) == 1:
        return texts[0].strip()
    return "\n\n".join(f"Document: {n}\n\n{t.strip()}" for n, t in zip(names, texts, strict=True))


def build_prompt(
    fmt: str,
    context: str,
    question: str,
    history: Sequence[Message] = (),
    decline: bool = False,
    render_chat: Callable[[list[Message]], str] | None = None,
) -> Prompt:
    """Build the prompt for one question. ``decline`` asks the model to say "unanswerable" (Self-Route)."""
    if fmt == "chatqa":
        turns = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in history]
        ask = " ".join(filter(None, [SHORT_ANSWER, DECLINE if decline else "", question]))
        head = f"{CHATQA_SYSTEM}\n\n{context}\n\n"
        body = "\n\n".join([*turns, f"User: {ask}", "Assistant:"])
        return Prompt(head + body, ["\nUser:", "\n\nUser"], len(head))
    if fmt == "chat":
        if render_chat is None:
            raise ValueError("the chat format needs the generator's chat template")
        system = "Answer questions about the context below with a short answer."
        if decline:
            system += " " + DECLINE
        messages = [{"role": "system", "content": f"{system}\n\nContext:\n{context}"}, *history]
        messages.append({"role": "user", "content": question})
        text = render_chat(messages)
        return Prompt(text, [], text.find(context) + len(context))
    if fmt == "completion":
        # Measured on the sample document with Gemma 3 270M base (RAG, k=5, 19 questions): a bare "Q:/A:"
        # continuation scored 12/19, an instruction line before it 7-9/19. Base models follow form, not orders.
        head = f"{context}\n\n"
        qa = [f"{'Q' if m['role'] == 'user' else 'A'}: {m['content'].strip()}" for m in history]
        body = "\n".join([*([DECLINE] if decline else []), *qa, f"Q: {question.strip()}", "A:"])
        return Prompt(head + body, ["\n", "Q:"], len(head))
    raise ValueError(f"unknown prompt format '{fmt}' (chatqa, chat, completion)")


def fill_template(template: str, context: str, question: str) -> Prompt:
    """Benchmarks bring their own official templates with {context} and {input} (or {question}) placeholders.

    Single-pass, as ``str.format``: a ``{input}`` inside the document (code tasks have them) stays text."""
    values = {"context": context, "input": question, "question": question}
    parts = re.split(r"\{(context|input|question)\}", template)
    text, context_end = "", 0
    for i, part in enumerate(parts):
        text += values[part] if i % 2 else part
        if i % 2 and part == "context" and not context_end:
            context_end = len(text)
    return Prompt(text, [], context_end)


# -- map-reduce (chatqa.mapreduce): the same formats, with the instruction after the context ---------------
# Measured 2026-12-02 with the default Qwen2.5-Coder-0.5B on Moby-Dick (3 sections x 4 global questions): asked
# to "reply NONE" when a part has nothing on the question, it replied NONE 12/12 times, even on the part holding
# the ending, and a whole-book summary came out of 439 NONEs. Without the invitation it wrote notes every time
# ("Manhattoes, Corlears Hook, and Whitehall"). So NONE is offered only where a profile says its model can judge
# relevance (mapreduce.none_reply); notes that say NONE anyway are still dropped (chatqa.mapreduce.kept).
MAP_INSTRUCTION = (
    "The context is one part of that document. From this part only, write one or two short sentences with the "
    "facts that help answer the question (who, what happens, where)."
)
MAP_NONE = "If this part has nothing that helps, write NONE."
COMBINE_INSTRUCTION = (
    "These are notes on consecutive parts of one document, in order. Merge them into shorter notes that keep "
    "everything bearing on the question, in order."
)
FINAL_CONTEXT = "Notes taken from consecutive parts of the document, in document order:"


@dataclass
class MapReducePrompts:
    """Map, combine and final prompts in a profile's format (or a benchmark's template for the final one).

    Each is built by :func:`build_prompt` with the instruction folded into the question, so the section or the
    notes come first and stay a prefix shared across questions; the final prompt is the route's usual answer
    prompt over the notes, so its answers look like every other route's (and a benchmark's template keeps its
    official output format)."""

    fmt: str
    render_chat: Callable[[list[Message]], str] | None = None
    history: Sequence[Message] = ()
    template: str | None = None
    extra_stop: Sequence[str] = ()
    none_reply: bool = False  # offer NONE for a part with nothing on the question (mapreduce.none_reply)

    def _build(self, context: str, question: str, history: Sequence[Message] = ()) -> Prompt:
        prompt = build_prompt(self.fmt, context, question, history, False, self.render_chat)
        prompt.stop.extend(s for s in self.extra_stop if s not in prompt.stop)
        return prompt

    def map(self, section: str, question: str) -> Prompt:
        instruction = f"{MAP_INSTRUCTION} {MAP_NONE}" if self.none_reply else MAP_INSTRUCTION
        asked = f"Question about the whole document: {question}\n" if question else ""
        return self._build(section, f"{asked}{instruction}")

    def combine(self, notes: str, question: str) -> Prompt:
        return self._build(notes, f"{COMBINE_INSTRUCTION}\nQuestion: {question}" if question else COMBINE_INSTRUCTION)

    def final(self, notes: str, question: str, *, are_notes: bool = True) -> Prompt:
        """``are_notes=False``: ``notes`` is the document itself (it fit one section), not map answers."""
        context = (f"{FINAL_CONTEXT}\n\n{notes}" if notes else FINAL_CONTEXT) if are_notes else notes
        if self.template:
            prompt = fill_template(self.template, context, question)
            prompt.stop.extend(s for s in self.extra_stop if s not in prompt.stop)
            return prompt
        return self._build(context, question, self.history)
