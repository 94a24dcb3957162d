"""The ChatQA pipeline: documents in, a routed, cited answer out.

``ChatQA`` owns the three models (tokenizer, retriever, generator), loads each only when first needed, and
keeps them for the next question; indexes are cached in memory too, so a session of questions pays for
loading once. Each answer records the route taken, why, and what it cost per stage.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chatqa import mapreduce
from chatqa.chunking import Chunk, chunk_documents
from chatqa.config import Config, load_profile
from chatqa.errors import ContextTooLongError, InputError
from chatqa.generation import Generation, Generator, Tokenizer, load_generator, load_tokenizer
from chatqa.index import DocIndex, index_key, open_index
from chatqa.ingest import Document, load_documents
from chatqa.prompting import (
    DECLINE,
    MapReducePrompts,
    Prompt,
    build_prompt,
    fill_template,
    format_chunks,
    format_documents,
)
from chatqa.retrieval import METHODS, Hit, search
from chatqa.routing import MODES, Route, cap_map_calls, decide, fallback

ESTIMATE_PREFIX_CHARS = 200_000  # a prefix long enough for a stable tokens-per-character ratio
ESTIMATE_MARGIN = 4  # estimates above this many windows are trusted as "does not fit" (issue 11 item 4)

DocLike = str | Path | Document
Message = dict[str, str]


@dataclass
class Answer:
    answer: str
    route: str  # "rag", "long" or "map-reduce": what produced the final answer
    reason: str
    mode: str  # what was asked for
    question: str
    citations: list[dict[str, Any]]
    usage: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)  # self-route's declined RAG answer
    truncated: bool = False
    partials: list[dict[str, Any]] = field(default_factory=list)  # map-reduce: each section's answer, in order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def add(self, gen: Generation) -> None:
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens
        self.cached_tokens += gen.cached_tokens
        self.add_time("prefill", gen.prefill_s)
        self.add_time("decode", gen.decode_s)


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    """One call at a time per instance: two threads generating on one llama.cpp context abort the process."""

    @functools.wraps(method)
    def call(self: ChatQA, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return call


class ChatQA:
    def __init__(self, config: Config | None = None) -> None:
        from chatqa.progress import quiet_libraries

        quiet_libraries()
        self.config = config or Config()
        self._tokenizer: Tokenizer | None = None
        self._generator: Generator | None = None
        self._embedder: Any = None
        self._indexes: dict[str, DocIndex] = {}
        self._lock = threading.RLock()  # one call at a time: llama.cpp contexts are not re-entrant (issue 11 item 1)
        self._doc_tokens: dict[str, int] = {}
        self._chunk_lists: dict[str, list[Chunk]] = {}
        self._load_s = 0.0  # model loading time during the current call
        self._stop: list[str] = []  # the current call's extra stop strings

    @classmethod
    def from_profile(cls, profile: str = "default", **overrides: Any) -> ChatQA:
        """Build from a profile name in configs/ or a YAML path; ``overrides`` use ``section.key`` names
        (pass them as a dict: ``ChatQA.from_profile("default", **{"retrieval.top_k": 8})``)."""
        return cls(load_profile(profile).replace(**overrides))

    # -- models, loaded on first use ---------------------------------------------------------------
    def _timed(self, load: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = load()
        self._load_s += time.perf_counter() - start
        return out

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            if self._generator is not None:
                self._tokenizer = self._generator.tokenizer
            else:
                self._tokenizer = self._timed(lambda: load_tokenizer(self.config.generator))
        return self._tokenizer

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = self._timed(lambda: load_generator(self.config.generator))
            self._tokenizer = self._generator.tokenizer
            if self.config.generator.backend == "llamacpp":  # document prefixes' KV states, kept on disk
                from chatqa.kvcache import KVStore, kv_root

                self._generator.kv_store = KVStore(kv_root(self.config))  # type: ignore[attr-defined]
        return self._generator

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from chatqa.embedding import Embedder

            self._embedder = self._timed(lambda: Embedder(self.config.retriever))
        return self._embedder

    # -- documents and indexes ----------------------------------------------------------------------
    @staticmethod
    def documents(docs: Sequence[DocLike] | DocLike) -> list[Document]:
        return load_documents(docs)

    @_serialised
    def index(self, docs: Sequence[DocLike] | DocLike, rebuild: bool = False, progress: bool = False) -> DocIndex:
        documents = self.documents(docs)
        key = index_key(documents, self.config, self.tokenizer.id)
        cached = self._indexes.get(key)
        if cached is not None and not rebuild and _same_docs(cached, documents):
            return cached
        index = open_index(
            documents, self.config, self.tokenizer, lambda: self.embedder, progress=progress, rebuild=rebuild
        )
        self._indexes[key] = index
        return index

    # -- answering ------------------------------------------------------------------------------------
    @_serialised
    def ask(
        self,
        question: str | None = None,
        docs: Sequence[DocLike] | DocLike | None = None,
        *,
        messages: Sequence[Message] | None = None,
        mode: str | None = None,
        top_k: int | None = None,
        retrieval: str | None = None,
        truncate: str | None = None,
        max_new_tokens: int | None = None,
        template: str | None = None,
        stop: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
        progress: bool = False,
        max_map_calls: int | None = None,
    ) -> Answer:
        """Answer ``question`` (or the last user turn of ``messages``) about ``docs``.

        ``template`` is a benchmark's own prompt with ``{context}`` and ``{input}`` placeholders; without it
        the profile's prompt format is used. ``stop`` adds stop strings to the format's own (a template that
        ends with an answer's opening, such as ``is <``, needs its closing ``>`` to end the answer)."""
        cfg = self.config
        self._stop = list(stop or [])
        question, history = _split_messages(question, messages)
        mode = mode or cfg.routing.mode
        if mode not in MODES:
            raise InputError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
        method = retrieval or cfg.retrieval.method
        if method not in METHODS:
            raise InputError(f"unknown retrieval '{method}' (choose from {', '.join(METHODS)})")
        k = cfg.retrieval.top_k if top_k is None else top_k
        if k < 1:
            raise InputError("--top-k must be at least 1")
        budget = cfg.generator.max_new_tokens if max_new_tokens is None else max_new_tokens
        if budget < 1:
            raise InputError("--max-new-tokens must be at least 1")
        truncate = truncate or cfg.routing.truncate
        if truncate not in (None, "middle"):
            raise InputError(f"unknown truncate '{truncate}' (the only choice is middle)")
        max_map_calls = cfg.mapreduce.max_map_calls if max_map_calls is None else max_map_calls
        if max_map_calls is not None and max_map_calls < 1:
            raise InputError("--max-map-calls must be at least 1")
        if docs is None:
            raise InputError("no document given")
        if budget >= self.generator.context_window:  # blame the budget, not a document that cannot help it
            raise InputError(f"the answer budget (--max-new-tokens) = {budget:,} leaves no room in the context "
                             f"window ({self.generator.context_window:,} tokens)")  # fmt: skip

        start = time.perf_counter()
        self._load_s = 0.0  # only loads caused by this call are charged to it
        usage = _Usage()
        documents = self.documents(docs)
        generator = self.generator
        overhead = self._overhead(question, history, template)
        room = generator.context_window - overhead - budget
        effective = cfg.generator.effective_window
        effective_room = effective - overhead - budget if effective is not None else None
        full_context = format_documents([d.name for d in documents], [d.text for d in documents])
        doc_tokens, exact = self._document_tokens(full_context, room)
        if not exact and mode == "long" and truncate != "middle":
            raise ContextTooLongError(
                f"document is about {doc_tokens:,} tokens (estimated from its first {ESTIMATE_PREFIX_CHARS:,} "
                f"characters): it does not fit the generator's window ({room:,} tokens left for the document); "
                "use --mode rag or auto, or --truncate middle"
            )
        route = decide(mode, question, doc_tokens, room, effective_room, truncate)
        if not exact:  # say so: the count in the reason is an estimate, not a tokenization
            route = replace(
                route,
                reason=route.reason.replace(
                    f"document {doc_tokens:,} tokens", f"document about {doc_tokens:,} tokens (estimated)"
                ),
            )

        attempts: list[dict[str, Any]] = []
        citations: list[dict[str, Any]]
        truncated = False
        extra: dict[str, Any] = {}
        partials: list[dict[str, Any]] = []
        if route.route == "map-reduce":
            mr_plan, prompts = self._map_reduce_plan(documents, question, history, template, budget, mode,
                                                     max_map_calls)  # fmt: skip
            route = cap_map_calls(route, mode, mr_plan.map_calls, max_map_calls)
            if route.route == "map-reduce":
                result = self._map_reduce(mr_plan, prompts, question, budget, usage, on_text, progress)
                text, partials, extra = result.text, result.partials, result.usage()
                citations = [s.citation() for s in result.cited]
                route = Route(route.route, f"{route.reason} in {mr_plan.describe()}; {result.summary()}")
        if route.route == "rag":  # only RAG needs the index: long-context questions never pay for embedding
            loaded = self._load_s
            index_start = time.perf_counter()
            index = self.index(documents, progress=progress)
            usage.add_time("index", time.perf_counter() - index_start - (self._load_s - loaded))
            decline = mode == "self-route"
            text, citations, note = self._rag(
                index, question, history, k, method, room, budget, template, decline, usage, on_text
            )
            if note:
                route = Route(route.route, f"{route.reason}; {note}")
            second = fallback(text, doc_tokens, room) if decline else None
            if decline and second is None and on_text and text:  # held back in case of a fallback; it stands
                on_text(text)
            if second is not None:
                attempts.append({"route": "rag", "answer": text, "citations": citations})
                route = second
        if route.route == "long":
            context = full_context
            if route.truncate and doc_tokens > room:
                context = self._truncate_middle(context, room)
                truncated = True
            prompt = self._prompt(context, question, history, template, False)
            prefix = prompt.text[: prompt.context_chars]  # shared by every question on this document
            gen = generator.generate(prompt.text, budget, prompt.stop, on_text, prefix=prefix)
            usage.add(gen)
            text = gen.text
            citations = [
                {
                    "doc": d.name,
                    "lines": [1, d.text.count("\n") + 1],
                    "chunk": None,
                    "pages": [1, len(d.pages)] if d.pages else None,
                }  # fmt: skip
                for d in documents
            ]
        usage.seconds["load"] = self._load_s
        usage.seconds["total"] = time.perf_counter() - start
        return Answer(
            answer=text,
            route=route.route,
            reason=route.reason,
            mode=mode,
            question=question,
            citations=citations,
            usage={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cached_tokens": usage.cached_tokens,
                "document_tokens": doc_tokens,
                "seconds": {k: round(v, 4) for k, v in usage.seconds.items()},
                **extra,
            },
            attempts=attempts,
            truncated=truncated,
            partials=partials,
        )

    def chunks(self, documents: list[Document]) -> list[Chunk]:
        """The index's chunks (same ids and line ranges as RAG cites), without embedding anything: chunking is
        deterministic in the tokenizer and chunk settings, so this is exactly what the index holds. Kept per
        content, so the same text under another name (eval samples) is not chunked again."""
        cfg = self.config.chunking
        key = hashlib.sha256(json.dumps([[d.sha256 for d in documents], vars(cfg), self.tokenizer.id])
                             .encode()).hexdigest()  # fmt: skip
        if key not in self._chunk_lists:
            built = next((i for i in self._indexes.values() if _same_docs(i, documents)
                          and i.manifest["chunking"] == vars(cfg)), None)  # fmt: skip
            self._chunk_lists[key] = built.chunks if built is not None else chunk_documents(
                documents, self.tokenizer.count, cfg.chunk_tokens, cfg.overlap_tokens)  # fmt: skip
        names = [d.name for d in documents]
        return [c if c.doc_name == names[c.doc] else replace(c, doc_name=names[c.doc]) for c in self._chunk_lists[key]]

    def _map_reduce_plan(self, documents: list[Document], question: str, history: list[Message],
                         template: str | None, budget: int, mode: str,
                         max_map_calls: int | None) -> tuple[mapreduce.Plan, MapReducePrompts]:  # fmt: skip
        """Sections and worst-case calls, before any generation; a forced map-reduce over the cap is refused
        here (``auto`` gets the plan and falls back to RAG itself)."""
        cfg, gen = self.config, self.generator
        fmt = cfg.generator.prompt_format
        prompts = MapReducePrompts(fmt, gen.render_chat if fmt == "chat" else None, history, template, self._stop)
        effective = cfg.generator.effective_window
        window = min(effective, gen.context_window) if effective else gen.context_window  # 0: trusts no length
        map_overhead, reduce_overhead = mapreduce.overheads(prompts, self.tokenizer.count, question)
        mr = cfg.mapreduce
        the_plan = mapreduce.plan(
            self.chunks(documents), self.tokenizer.count, window=window, map_overhead=map_overhead,
            reduce_overhead=reduce_overhead, map_budget=mr.map_max_new_tokens, reduce_budget=mr.reduce_max_new_tokens,
            answer_budget=budget, section_tokens=mr.section_tokens,
            max_map_calls=max_map_calls if mode == "map-reduce" else None,
        )  # fmt: skip
        return the_plan, prompts

    def _map_reduce(
        self,
        the_plan: mapreduce.Plan,
        prompts: MapReducePrompts,
        question: str,
        budget: int,
        usage: _Usage,
        on_text: Callable[[str], None] | None,
        progress: bool,
    ) -> mapreduce.Result:
        from chatqa.progress import bar

        mr = self.config.mapreduce
        with bar(progress, the_plan.map_calls, "map-reduce: map calls") as advance:
            result = mapreduce.run(
                self.generator, the_plan, question, prompts, map_budget=mr.map_max_new_tokens,
                reduce_budget=mr.reduce_max_new_tokens, answer_budget=budget, count=self.tokenizer.count,
                on_map=lambda done, total: advance(f"section {done}/{total}"), on_text=on_text,
            )  # fmt: skip
        for name, stage in result.stages.items():
            usage.prompt_tokens += stage.prompt_tokens
            usage.completion_tokens += stage.completion_tokens
            usage.cached_tokens += stage.cached_tokens
            usage.add_time("prefill", stage.prefill_s)
            usage.add_time("decode", stage.decode_s)
            usage.add_time(name, stage.seconds)
        return result

    def retrieve(self, index: DocIndex, query: str, k: int | None = None, method: str | None = None) -> list[Hit]:
        cfg = self.config.retrieval
        embed = self.embedder.embed_query if (method or cfg.method) != "bm25" else None
        return search(index, query, k or cfg.top_k, method or cfg.method, embed, cfg.rrf_k)

    def _rag(
        self,
        index: DocIndex,
        question: str,
        history: list[Message],
        k: int,
        method: str,
        room: int,
        budget: int,
        template: str | None,
        decline: bool,
        usage: _Usage,
        on_text: Callable[[str], None] | None,
    ) -> tuple[str, list[dict[str, Any]], str]:
        query = retrieval_query(question, history, self.config.retrieval.history_turns)
        loaded, t0 = self._load_s, time.perf_counter()
        hits = self.retrieve(index, query, k, method)  # may load the retriever when the index came from disk
        usage.add_time("retrieve", time.perf_counter() - t0 - (self._load_s - loaded))
        chunks = sorted((h.chunk for h in hits), key=lambda c: c.id)  # document order (OP-RAG)
        note = ""
        while len(chunks) > 1 and sum(c.n_tokens for c in chunks) > room:
            worst = min(hits, key=lambda h: h.score)  # drop the weakest hit until the context fits
            hits.remove(worst)
            chunks = [c for c in chunks if c.id != worst.chunk.id]
            note = f"top-k reduced to {len(chunks)} to fit the window"
        prompt = self._prompt(format_chunks(chunks), question, history, template, decline)
        gen = self.generator.generate(prompt.text, budget, prompt.stop, None if decline else on_text)
        usage.add(gen)
        score = {h.chunk.id: h.score for h in hits}
        return gen.text, [_cite(c, score[c.id]) for c in chunks], note

    def _prompt(
        self, context: str, question: str, history: list[Message], template: str | None, decline: bool
    ) -> Prompt:
        if template:
            prompt = fill_template(template, context, f"{question}\n{DECLINE}" if decline else question)
        else:
            fmt = self.config.generator.prompt_format
            render = self.generator.render_chat if fmt == "chat" else None
            prompt = build_prompt(fmt, context, question, history, decline, render)
        prompt.stop.extend(s for s in self._stop if s not in prompt.stop)
        return prompt

    def _overhead(self, question: str, history: list[Message], template: str | None) -> int:
        # Self-Route's decline sentence is the longest variant; counting it keeps every variant inside.
        return self.tokenizer.count(self._prompt("", question, history, template, True).text) + 8

    def _document_tokens(self, text: str, room: int) -> tuple[int, bool]:
        """(tokens, exact). Tokenizing grows faster than linearly with length (a 5 MB text took minutes), yet
        every routing decision only compares the count with the window. So a text whose prefix-based estimate
        is more than ``ESTIMATE_MARGIN`` times the window is not tokenized whole: it cannot fit whatever the
        rest holds, short of the rest being several times sparser in tokens than its first 200K characters."""
        if len(text) > ESTIMATE_PREFIX_CHARS:
            prefix = text[:ESTIMATE_PREFIX_CHARS]
            estimate = round(len(text) * self.tokenizer.count(prefix) / len(prefix))
            if estimate > ESTIMATE_MARGIN * max(room, 1):
                return estimate, False
        return self._count(text), True

    def _count(self, text: str) -> int:
        """Token count of a whole document set, memoised: tokenizing a novel takes seconds."""
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if key not in self._doc_tokens:
            self._doc_tokens[key] = self.tokenizer.count(text)
        return self._doc_tokens[key]

    def _truncate_middle(self, text: str, room: int) -> str:
        """InfiniteBench's convention: keep the first and last halves of the budget, cut the middle."""
        ids = self.tokenizer.encode(text)
        half = room // 2
        return self.tokenizer.decode(ids[:half]) + self.tokenizer.decode(ids[len(ids) - (room - half) :])

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()


def _cite(chunk: Chunk, score: float) -> dict[str, Any]:
    return {
        "chunk": chunk.id,
        "doc": chunk.doc_name,
        "lines": [chunk.line_start, chunk.line_end],
        "pages": list(chunk.pages) if chunk.pages else None,  # PDFs: first and last page
        "score": round(float(score), 4),
    }


def _same_docs(index: DocIndex, docs: list[Document]) -> bool:
    return [d["sha256"] for d in index.manifest["documents"]] == [d.sha256 for d in docs]


def retrieval_query(question: str, history: Sequence[Message], turns: int) -> str:
    """ChatQA retrieves with the dialogue, not just the last turn: a follow-up such as "and when did he
    die?" only finds its passage together with the earlier user turns that name "he"."""
    earlier = [m["content"] for m in history if m["role"] == "user"]
    return " ".join([*earlier[max(0, len(earlier) - turns) :], question])


def _split_messages(question: str | None, messages: Sequence[Message] | None) -> tuple[str, list[Message]]:
    history = [dict(m) for m in (messages or [])]
    for m in history:
        if m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), str):
            raise InputError("messages must be {'role': 'user'|'assistant', 'content': str} dicts")
    if question is None:
        if not history or history[-1]["role"] != "user":
            raise InputError("no question: pass question= or end messages with a user turn")
        question = history.pop()["content"]
    if not question.strip():
        raise InputError("the question is empty")
    return question.strip(), history
