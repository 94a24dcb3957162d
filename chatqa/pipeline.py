"""The ChatQA pipeline: documents in, a routed, cited answer out.

``ChatQA`` owns the three models (tokenizer, retriever, generator), loads each only when first needed, and
keeps them for the next question; indexes are cached in memory too, so a session of questions pays for
loading once. Each answer records the route taken, why, and what it cost per stage.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatqa.chunking import Chunk
from chatqa.config import Config, load_profile
from chatqa.errors import InputError
from chatqa.generation import Generation, Generator, Tokenizer, load_generator, load_tokenizer
from chatqa.index import DocIndex, index_key, open_index
from chatqa.ingest import Document, load_documents
from chatqa.prompting import DECLINE, Prompt, build_prompt, fill_template, format_chunks, format_documents
from chatqa.retrieval import METHODS, Hit, search
from chatqa.routing import MODES, Route, decide, fallback

DocLike = str | Path | Document
Message = dict[str, str]


@dataclass
class Answer:
    answer: str
    route: str  # "rag" or "long": what produced the final answer
    reason: str
    mode: str  # what was asked for
    question: str
    citations: list[dict[str, Any]]
    usage: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)  # self-route's declined RAG answer
    truncated: bool = False

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


class ChatQA:
    def __init__(self, config: Config | None = None) -> None:
        from chatqa.progress import quiet_libraries

        quiet_libraries()
        self.config = config or Config()
        self._tokenizer: Tokenizer | None = None
        self._generator: Generator | None = None
        self._embedder: Any = None
        self._indexes: dict[str, DocIndex] = {}
        self._doc_tokens: dict[str, int] = {}
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
        if docs is None:
            raise InputError("no document given")

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
        doc_tokens = self._count(full_context)
        route = decide(mode, question, doc_tokens, room, effective_room, truncate)

        attempts: list[dict[str, Any]] = []
        citations: list[dict[str, Any]]
        truncated = False
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
            },
            attempts=attempts,
            truncated=truncated,
        )

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
        if decline and on_text and not fallback(gen.text, 0, 1):
            on_text(gen.text)
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
