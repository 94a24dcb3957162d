"""The ChatQA pipeline: documents in, a routed, cited answer out.

A question travels top to bottom: :meth:`ChatQA.ask` validates the call into a frozen :class:`Request`
(:meth:`ChatQA.request`, the options checked by the config layer), :meth:`ChatQA.plan` measures the document
and the room the prompt leaves and asks :mod:`chatqa.routing` for a route, then :meth:`ChatQA.execute` runs
the route's function from :data:`ROUTES` (:func:`answer_rag`, :func:`answer_long`, :func:`answer_map_reduce`),
each returning a :class:`Reply` (text, citations, the prompt read). Self-Route is RAG asked to decline (or
judged by a separate yes/no call over the same chunks), then long context if it declined and the document fits.

``ChatQA`` takes its collaborators (generator, tokenizer, embedder) in ``__init__`` or loads each from the
config on first use, and keeps them for the next question. One instance may be shared by threads: calls are
serialised by a per-instance lock (llama.cpp contexts are not re-entrant). Nothing of one call is kept on the
instance: its options live in the request, its clock in a :class:`~chatqa.timing.Timer`.
"""

from __future__ import annotations

import hashlib
import json
import threading
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
from chatqa.preload import Preload
from chatqa.prompting import (
    DECLINE,
    DECLINED_ANSWER,
    JUDGE,
    JUDGE_WORDS,
    PLACE,
    Frame,
    MapReducePrompts,
    build_prompt,
    fill_template,
    format_chunks,
    format_documents,
    shared_cut,
    truncate_middle,
)
from chatqa.retrieval import Hit, search
from chatqa.routing import Judgement, Route, cap_map_calls, decide, fallback, is_global, judge
from chatqa.timing import Timer

ESTIMATE_PREFIX_CHARS = 200_000  # a prefix long enough for a stable tokens-per-character ratio
ESTIMATE_MARGIN = 4  # estimates above this many windows are trusted as "does not fit" (issue 11 item 4)
# Under ``auto``, a document with more characters than this many per token of the effective window is taken to
# need retrieval, and the retriever starts loading before the document is measured: prose runs about four
# characters per token. Only when the retriever loads depends on it, never the route or the answer.
PRELOAD_CHARS_PER_TOKEN = 6

DocLike = str | Path | Document
Message = dict[str, str]
OnText = Callable[[str], None] | None


@dataclass
class Answer:
    answer: str
    route: str  # "rag", "long" or "map-reduce": what produced the final answer (a key of ROUTES)
    reason: str
    mode: str  # what was asked for
    question: str
    citations: list[dict[str, Any]]
    usage: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)  # self-route's declined (or judged) RAG answer
    truncated: bool = False
    partials: list[dict[str, Any]] = field(default_factory=list)  # map-reduce: each section's answer, in order
    prompt_sha256: str = ""  # of the prompt that produced the answer: two answers that read the same input

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    """One call, validated: its options resolved against the profile by the config layer's checks."""

    question: str
    history: tuple[Message, ...]
    documents: tuple[Document, ...]
    mode: str
    top_k: int
    method: str
    truncate: str | None
    budget: int  # the answer's token budget (--max-new-tokens)
    max_map_calls: int | None
    template: str | None = None  # a benchmark's own prompt with {context} and {input}
    stop: tuple[str, ...] = ()  # added to the prompt format's own stop strings
    progress: bool = False


@dataclass(frozen=True)
class Plan:
    """What a request will cost before any generation: the document's size, the room left, the route."""

    route: Route
    doc_tokens: int
    room: int  # the window minus the prompt's own tokens and the answer budget
    context: str  # the documents as one text, as long context reads them
    frame: Frame  # the answer prompt, built once; filled by the route
    decline_frame: Frame  # the same asking the model to decline when the context lacks the answer (Self-Route)
    map_reduce: mapreduce.Plan | None = None  # sections and worst-case calls, when the route is map-reduce
    map_reduce_prompts: MapReducePrompts | None = None
    judge_frame: Frame | None = None  # Self-Route's yes/no question over the RAG context, when it judges (config)


@dataclass
class Reply:
    """What a route returns: the text, its citations, the prompt that produced it and what it cost."""

    text: str
    citations: list[dict[str, Any]]
    prompt: str
    context: str = ""  # what the route put in the prompt's context (RAG: the chunks), for Self-Route's judge
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    note: str = ""  # appended to the route's reason (e.g. "top-k reduced to 3 to fit the window")
    truncated: bool = False
    usage: dict[str, Any] = field(default_factory=dict)  # route-specific costs (map-reduce: calls per stage)
    partials: list[dict[str, Any]] = field(default_factory=list)

    def count(self, gen: Generation, timer: Timer) -> None:
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens
        self.cached_tokens += gen.cached_tokens
        timer.add("prefill", gen.prefill_s)
        timer.add("decode", gen.decode_s)


class ChatQA:
    def __init__(
        self,
        config: Config | None = None,
        *,
        generator: Generator | None = None,
        tokenizer: Tokenizer | None = None,
        embedder: Any = None,
    ) -> None:
        """Collaborators passed in are used as they are (a test's fake generator, the eval's caching wrapper,
        models another instance loaded); the others are loaded from ``config`` when first needed."""
        from chatqa.progress import quiet_libraries

        quiet_libraries()
        self.config = config or Config()
        self._generator = generator
        self._tokenizer = tokenizer or (generator.tokenizer if generator is not None else None)
        self._embedder = embedder
        self._embedder_preload: Preload[Any] | None = None  # the retriever loading on a thread (see plan)
        self._indexes: dict[str, DocIndex] = {}
        self._doc_tokens: dict[str, int] = {}
        self._chunk_lists: dict[str, list[Chunk]] = {}
        self._lock = threading.RLock()  # one call at a time: llama.cpp contexts are not re-entrant (issue 11 item 1)

    @classmethod
    def from_profile(cls, profile: str = "default", **overrides: Any) -> ChatQA:
        """Build from a profile name in configs/ or a YAML path; ``overrides`` use ``section.key`` names
        (pass them as a dict: ``ChatQA.from_profile("default", **{"retrieval.top_k": 8})``)."""
        return cls(load_profile(profile).replace(**overrides))

    def with_generator(self, generator: Generator) -> ChatQA:
        """This pipeline answering through another generator (e.g. a :class:`~chatqa.generation.CachingGenerator`
        around its own): the same config, models, indexes, caches and lock."""
        other = ChatQA(self.config, generator=generator, tokenizer=self.tokenizer, embedder=self._embedder)
        other._indexes, other._doc_tokens, other._chunk_lists = self._indexes, self._doc_tokens, self._chunk_lists
        other._embedder_preload = self._embedder_preload
        other._lock = self._lock
        return other

    # -- collaborators, loaded on first use ------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = (self._generator.tokenizer if self._generator is not None
                               else load_tokenizer(self.config.generator))  # fmt: skip
        return self._tokenizer

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            from chatqa.kvcache import kv_root

            self._generator = load_generator(self.config.generator, state_dir=kv_root(self.config))
            self._tokenizer = self._generator.tokenizer
        return self._generator

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            if self._embedder_preload is not None:  # a load already under way: wait for it (its error is ours)
                try:
                    self._embedder = self._embedder_preload.result()
                finally:
                    self._embedder_preload = None
            else:
                self._embedder = _load_embedder(self.config)
        return self._embedder

    def _preload_embedder(self, request: Request) -> None:
        """Start loading the retriever on a thread when this request will most likely read by dense retrieval, so
        that its import (torch, transformers: seconds) overlaps the generator load, the plan and the index check
        instead of following them. A wrong guess costs a load that was not needed, never a different answer.

        Only beside llama.cpp: two threads importing one package at once can meet in a circular import, which
        Python breaks with an error rather than a wait, and the other backends import transformers themselves
        (the hf generator, an openai profile's local tokenizer). For the same reason this thread first imports
        what it needs while the retriever loads: llama.cpp and the index's readers (0.2 s it would spend anyway)."""
        if self._embedder is not None or self._embedder_preload is not None or request.method == "bm25":
            return
        if self.config.generator.backend != "llamacpp":
            return
        if request.mode == "auto":
            gen = self.config.generator
            window = gen.effective_window if gen.effective_window is not None else self._window()
            chars = sum(len(d.text) for d in request.documents)
            if is_global(request.question) or chars <= PRELOAD_CHARS_PER_TOKEN * window:
                return  # map-reduce, or the document may fit: long context reads no index
        elif request.mode not in ("rag", "self-route"):
            return
        import bm25s  # noqa: F401 - see above: imported here, not beside the retriever's import
        import faiss  # noqa: F401
        import llama_cpp  # noqa: F401

        self._embedder_preload = Preload(lambda: _load_embedder(self.config), "embedder")

    def _loaded(self, name: str, timer: Timer) -> Any:
        """A collaborator, its loading (if this call causes it) charged to the timer's "load" stage."""
        if getattr(self, f"_{name}") is not None:
            return getattr(self, name)
        with timer.stage("load"):
            return getattr(self, name)

    # -- documents and indexes ----------------------------------------------------------------------
    @staticmethod
    def documents(docs: Sequence[DocLike] | DocLike) -> list[Document]:
        return load_documents(docs)

    def index(self, docs: Sequence[DocLike] | DocLike, rebuild: bool = False, progress: bool = False) -> DocIndex:
        with self._lock:
            return self._index(self.documents(docs), rebuild=rebuild, progress=progress)

    def _index(self, documents: Sequence[Document], rebuild: bool = False, progress: bool = False,
               embedder: Callable[[], Any] | None = None) -> DocIndex:  # fmt: skip
        """The index of documents already read (keyed once); ``embedder`` is how to get the retriever if the
        index must be built (a timed load during an answer)."""
        documents = list(documents)
        key = index_key(documents, self.config, self.tokenizer.id)
        cached = self._indexes.get(key)
        if cached is None or rebuild or not _same_docs(cached, documents):
            cached = open_index(documents, self.config, self.tokenizer, embedder or (lambda: self.embedder),
                                progress=progress, rebuild=rebuild, key=key)  # fmt: skip
            self._indexes[key] = cached
        return _named(cached, documents)

    def retrieve(self, index: DocIndex, query: str, k: int | None = None, method: str | None = None) -> list[Hit]:
        cfg = self.config.retrieval
        embed = self.embedder.embed_query if (method or cfg.method) != "bm25" else None
        return search(index, query, k or cfg.top_k, method or cfg.method, embed, cfg.rrf_k)

    def chunks(self, documents: Sequence[Document]) -> list[Chunk]:
        """The index's chunks (same ids and line ranges as RAG cites), without embedding anything: chunking is
        deterministic in the tokenizer and chunk settings, so this is exactly what the index holds. Kept per
        content, so the same text under another name (eval samples) is not chunked again."""
        documents = list(documents)
        cfg = self.config.chunking
        key = hashlib.sha256(json.dumps([[d.sha256 for d in documents], vars(cfg), self.tokenizer.id])
                             .encode()).hexdigest()  # fmt: skip
        if key not in self._chunk_lists:
            built = next((i for i in self._indexes.values() if _same_docs(i, documents)
                          and i.manifest["chunking"] == vars(cfg)), None)  # fmt: skip
            self._chunk_lists[key] = built.chunks if built is not None else chunk_documents(
                documents, self.tokenizer.count, cfg.chunk_tokens, cfg.overlap_tokens)  # fmt: skip
        return list(_renamed(self._chunk_lists[key], documents))

    # -- answering: request, plan, execute ------------------------------------------------------------
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
        on_text: OnText = None,
        progress: bool = False,
        max_map_calls: int | None = None,
    ) -> Answer:
        """Answer ``question`` (or the last user turn of ``messages``) about ``docs``.

        ``template`` is a benchmark's own prompt with ``{context}`` and ``{input}`` placeholders; without it
        the profile's prompt format is used. ``stop`` adds stop strings to the format's own (a template that
        ends with an answer's opening, such as ``is <``, needs its closing ``>`` to end the answer).
        ``progress`` shows the stages on stderr (a terminal only)."""
        with self._lock:
            timer = Timer(_stages() if progress else None)
            if progress and on_text is not None:  # the stage line goes before the answer streams
                on_text = _after(timer.quiet, on_text)
            try:
                request = self.request(question, docs, messages, mode=mode, top_k=top_k, retrieval=retrieval,
                                       truncate=truncate, max_new_tokens=max_new_tokens, template=template,
                                       stop=stop, progress=progress, max_map_calls=max_map_calls)  # fmt: skip
                plan = self.plan(request, timer)
                route, reply, attempts = self.execute(request, plan, timer, on_text)
                return _answer(request, plan, route, reply, attempts, timer)
            finally:
                timer.quiet()

    def request(
        self,
        question: str | None,
        docs: Sequence[DocLike] | DocLike | None,
        messages: Sequence[Message] | None = None,
        **options: Any,
    ) -> Request:
        """Validate a call: the options go through the config layer's checks (a profile's one-line errors,
        naming the flag), the question and dialogue are split, the documents read once."""
        question, history = _split_messages(question, messages)
        cfg = self.config.with_options(**{
            "routing.mode": options.get("mode"), "retrieval.top_k": options.get("top_k"),
            "retrieval.method": options.get("retrieval"), "routing.truncate": options.get("truncate"),
            "generator.max_new_tokens": options.get("max_new_tokens"),
            "mapreduce.max_map_calls": options.get("max_map_calls"),
        })  # fmt: skip
        if docs is None:
            raise InputError("no document given")
        return Request(
            question=question, history=tuple(history), documents=tuple(self.documents(docs)),
            mode=cfg.routing.mode, top_k=cfg.retrieval.top_k, method=cfg.retrieval.method,
            truncate=cfg.routing.truncate, budget=cfg.generator.max_new_tokens,
            max_map_calls=cfg.mapreduce.max_map_calls, template=options.get("template"),
            stop=tuple(options.get("stop") or ()), progress=bool(options.get("progress")),
        )  # fmt: skip

    def plan(self, request: Request, timer: Timer | None = None) -> Plan:
        """Measure the document and the room the prompt leaves, then route (map-reduce: its sections too, so a
        ``--max-map-calls`` cap refuses, or ``auto`` falls back to RAG, before any generation)."""
        timer = timer or Timer()
        # A text long enough to be refused from an estimate is planned with the tokenizer alone, so a refusal never
        # waits for the model; any other loads the generator now (the answer needs it, and a tokenizer loaded on
        # its own first would cost a second vocabulary load: 0.4 s for Qwen's).
        big = sum(len(d.text) for d in request.documents) > ESTIMATE_PREFIX_CHARS
        self._preload_embedder(request)
        self._loaded("tokenizer" if big else "generator", timer)
        window, budget = self._window(), request.budget
        if budget >= window:  # blame the budget, not a document that cannot help it
            raise InputError(f"the answer budget (--max-new-tokens) = {budget:,} leaves no room in the context "
                             f"window ({window:,} tokens)")  # fmt: skip
        frame = self._frame(request, request.question, False)
        decline_frame = self._frame(request, request.question, True)
        # Self-Route's decline sentence is the longest variant; counting it keeps every variant inside.
        overhead = self.tokenizer.count(decline_frame.fill("").text) + 8
        room = window - overhead - budget
        effective = self.config.generator.effective_window
        effective_room = effective - overhead - budget if effective is not None else None
        docs = request.documents
        context = format_documents([d.name for d in docs], [d.text for d in docs])
        doc_tokens, exact = self._document_tokens(context, room)
        if not exact and request.mode == "long" and request.truncate != "middle":
            raise ContextTooLongError(
                f"document is about {doc_tokens:,} tokens (estimated from its first {ESTIMATE_PREFIX_CHARS:,} "
                f"characters): it does not fit the generator's window ({room:,} tokens left for the document); "
                "use --mode rag or auto, or --truncate middle"
            )
        route = decide(request.mode, request.question, doc_tokens, room, effective_room, request.truncate)
        if not exact:  # say so: the count in the reason is an estimate, not a tokenization
            route = replace(route, reason=route.reason.replace(
                f"document {doc_tokens:,} tokens", f"document about {doc_tokens:,} tokens (estimated)"))  # fmt: skip
        sections = prompts = None
        if route.route == "map-reduce":
            sections, prompts = self._plan_map_reduce(request)
            route = cap_map_calls(route, request.mode, sections.map_calls, request.max_map_calls)
            if route.route == "map-reduce":
                route = Route(route.route, f"{route.reason} in {sections.describe()}")
            else:
                sections = prompts = None
        # The judge reads the RAG context with its own question and writes one token: its prompt may exceed the
        # answer's by a few tokens (the quoted question), far less than the answer budget the room keeps free.
        judged = request.mode == "self-route" and self.config.routing.self_route_decline == "judge"
        judge_frame = self._judge_frame(request) if judged else None
        return Plan(route, doc_tokens, room, context, frame, decline_frame, sections, prompts, judge_frame)

    def execute(self, request: Request, plan: Plan, timer: Timer,
                on_text: OnText = None) -> tuple[Route, Reply, list[dict[str, Any]]]:  # fmt: skip
        """Take the planned route; Self-Route's RAG answer is held back, and replaced by long context when it
        declined (its own words, or the judge's verdict) and the document fits; else it stands, or a judged
        decline is answered as one, and is shown then."""
        route, attempts = plan.route, []
        decline = request.mode == "self-route" and route.route == "rag"
        judged = decline and plan.judge_frame is not None  # the answer prompt is then the plain RAG one
        timer.show(f"{route.route}: {route.reason}")
        reply = ROUTES[route.route](self, request, plan, timer, None if decline else on_text, decline and not judged)
        if reply.note:
            route = Route(route.route, f"{route.reason}; {reply.note}", route.truncate)
        if decline:
            judgement, judged_usage = self._judge(plan, reply, timer) if judged else (None, {})
            second = fallback(reply.text, plan.doc_tokens, plan.room, judgement)
            if second is None:
                if judgement is not None:
                    note = judgement.note()
                    if judgement.declined:
                        note += (f"; the document ({plan.doc_tokens:,} tokens) does not fit the window "
                                 f"({plan.room:,}): the decline stands")  # fmt: skip
                        attempts.append({"route": "rag", "answer": reply.text, "citations": reply.citations})
                        reply.text = DECLINED_ANSWER
                    route = Route(route.route, f"{route.reason}; {note}", route.truncate)
                if on_text and reply.text:
                    timer.quiet()
                    on_text(reply.text)
            else:
                attempts.append({"route": "rag", "answer": reply.text, "citations": reply.citations})
                first, route = reply, second
                reply = ROUTES[route.route](self, request, plan, timer, on_text, False)
                reply.prompt_tokens += first.prompt_tokens
                reply.completion_tokens += first.completion_tokens
                reply.cached_tokens += first.cached_tokens
            if judgement is not None:
                reply.usage["judge"] = judged_usage
        return route, reply, attempts

    def _judge(self, plan: Plan, reply: Reply, timer: Timer) -> tuple[Judgement, dict[str, Any]]:
        """Self-Route's judge: the yes/no question over exactly the chunks the RAG answer read, one read of the
        prompt and no generation; its tokens and prefill are charged to the reply (usage ``judge`` says which)."""
        assert plan.judge_frame is not None
        prompt = plan.judge_frame.fill(reply.context)
        timer.show("judging whether the retrieved passages hold the answer")
        got = self._loaded("generator", timer).word_probabilities(prompt.text, JUDGE_WORDS)
        timer.add("prefill", got.prefill_s)
        reply.prompt_tokens += got.prompt_tokens
        reply.cached_tokens += got.cached_tokens
        yes, no = got.probabilities
        judgement = judge(yes, no, self.config.routing.judge_threshold)
        usage = {"p_yes": judgement.p_yes, "yes": yes, "no": no, "threshold": judgement.threshold,
                 "declined": judgement.declined, "prompt_tokens": got.prompt_tokens,
                 "seconds": round(got.prefill_s, 4)}  # fmt: skip
        return judgement, usage

    # -- prompts, token counts, map-reduce sections --------------------------------------------------
    def _frame(self, request: Request, question: str, decline: bool) -> Frame:
        """The prompt around its context, asking ``question`` (the user's, or the judge's about it)."""
        question = f"{question}\n{DECLINE}" if decline and request.template else question
        if request.template:
            prompt = fill_template(request.template, PLACE, question)
        else:
            fmt = self.config.generator.prompt_format
            render = self._render_chat() if fmt == "chat" else None
            prompt = build_prompt(fmt, PLACE, question, list(request.history), decline, render)
        return Frame.around(prompt, request.stop)

    def _judge_frame(self, request: Request) -> Frame:
        """The judge's yes/no question in the answer's own prompt (sharing its KV prefix), except under a
        benchmark's template: that template is the benchmark's format, not the model's, and the judge's question
        is chatqa's own. Asked inside ChatRAG's ChatQA-format input, Qwen2.5-0.5B put a median 0.2% of its next
        token on yes or no (over 99% in its own chat format), and P(yes) of that sliver told answerable from
        unanswerable QuAC turns barely better than chance (AUC 0.59; eval/results/README.md, QuAC)."""
        own = replace(request, template=None)  # the dialogue so far stays: "that" in a question needs it
        return self._frame(own, JUDGE.format(question=request.question), False)

    def _window(self) -> int:
        """The generator's context window without loading it: every backend reports its profile's
        ``context_window``; a generator passed in reports its own."""
        return self._generator.context_window if self._generator is not None else self.config.generator.context_window

    def _render_chat(self) -> Callable[[list[Message]], str]:
        """The chat template. A GGUF's vocabulary carries it, so with llama.cpp the prompt is framed (and a
        document refused) before the model is loaded; other backends render through their generator."""
        loaded = self._generator is not None or self.config.generator.backend != "llamacpp"
        render = None if loaded else getattr(self.tokenizer, "render_chat", None)
        if render is None:
            return self.generator.render_chat

        def chat(messages: list[Message]) -> str:
            text = render(messages)
            return text if text is not None else self.generator.render_chat(messages)  # no template: its error

        return chat

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

    def _plan_map_reduce(self, request: Request) -> tuple[mapreduce.Plan, MapReducePrompts]:
        """Sections on the index's chunk boundaries, sized to the effective window (the nominal one when
        uncalibrated or trusting no length); a forced map-reduce over ``--max-map-calls`` is refused here."""
        cfg, nominal = self.config, self._window()
        fmt = cfg.generator.prompt_format
        prompts = MapReducePrompts(fmt, self._render_chat() if fmt == "chat" else None, list(request.history),
                                   request.template, list(request.stop), cfg.mapreduce.none_reply)  # fmt: skip
        effective = cfg.generator.effective_window
        window = min(effective, nominal) if effective else nominal  # 0: trusts no length
        map_overhead, reduce_overhead = mapreduce.overheads(prompts, self.tokenizer.count, request.question)
        mr = cfg.mapreduce
        sections = mapreduce.plan(
            self.chunks(request.documents), self.tokenizer.count, window=window, map_overhead=map_overhead,
            reduce_overhead=reduce_overhead, map_budget=mr.map_max_new_tokens, reduce_budget=mr.reduce_max_new_tokens,
            answer_budget=request.budget, section_tokens=mr.section_tokens,
            max_map_calls=request.max_map_calls if request.mode == "map-reduce" else None,
        )  # fmt: skip
        return sections, prompts

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()


# -- routes: each turns a request and its plan into a reply ---------------------------------------------
def rag_context(qa: ChatQA, request: Request, room: int, timer: Timer) -> tuple[list[Chunk], list[Hit], str]:
    """What RAG reads: the top-k chunks in document order (OP-RAG), the weakest dropped until they fit ``room``;
    with the hits that chose them and a note when some were dropped. Its own function so a diagnostic (did the
    retrieved context hold the answer?) sees exactly the chunks the reader saw, without generating."""

    def load_embedder() -> Any:
        return qa._loaded("embedder", timer)

    with timer.stage("index"):
        index = qa._index(request.documents, progress=request.progress, embedder=load_embedder)
    query = retrieval_query(request.question, request.history, qa.config.retrieval.history_turns)
    with timer.stage("retrieve"):
        if request.method != "bm25":  # an index from disk may not have loaded the retriever yet
            load_embedder()
        hits = qa.retrieve(index, query, request.top_k, request.method)
    chunks = sorted((h.chunk for h in hits), key=lambda c: c.id)  # document order (OP-RAG)
    note = ""
    while len(chunks) > 1 and sum(c.n_tokens for c in chunks) > room:
        worst = min(hits, key=lambda h: h.score)  # drop the weakest hit until the context fits
        hits.remove(worst)
        chunks = [c for c in chunks if c.id != worst.chunk.id]
        note = f"top-k reduced to {len(chunks)} to fit the window"
    return chunks, hits, note


def answer_rag(qa: ChatQA, request: Request, plan: Plan, timer: Timer, on_text: OnText, decline: bool) -> Reply:
    """Top-k chunks in document order (OP-RAG), the weakest dropped until they fit the room. Only this route
    needs the index: long-context questions never pay for embedding."""
    chunks, hits, note = rag_context(qa, request, plan.room, timer)
    context = format_chunks(chunks)
    prompt = (plan.decline_frame if decline else plan.frame).fill(context)
    generator = qa._loaded("generator", timer)
    gen = generator.generate(prompt.text, request.budget, prompt.stop, on_text, **_reading(qa, timer, prompt.text))
    score = {h.chunk.id: h.score for h in hits}
    reply = Reply(gen.text, [_cite(c, score[c.id]) for c in chunks], prompt.text, context, note=note)
    reply.count(gen, timer)
    return reply


def answer_long(qa: ChatQA, request: Request, plan: Plan, timer: Timer, on_text: OnText, decline: bool) -> Reply:
    """The whole document (its middle cut when asked and needed); its KV state is a prefix shared by every
    question on the document."""
    context, truncated = plan.context, False
    if plan.route.truncate and plan.doc_tokens > plan.room:
        tok, cut = qa.tokenizer, shared_cut(plan.room)
        kept, half = truncate_middle(tok.encode(context), cut), cut // 2
        context, truncated = tok.decode(kept[:half]) + tok.decode(kept[half:]), True
    prompt = plan.frame.fill(context)
    prefix = prompt.text[: prompt.context_chars]  # shared by every question on this document
    generator = qa._loaded("generator", timer)
    gen = generator.generate(prompt.text, request.budget, prompt.stop, on_text, prefix=prefix,
                             **_reading(qa, timer, prompt.text))  # fmt: skip
    whole = [{"doc": d.name, "lines": [1, d.text.count("\n") + 1], "chunk": None,
              "pages": [1, len(d.pages)] if d.pages else None} for d in request.documents]  # fmt: skip
    reply = Reply(gen.text, whole, prompt.text, truncated=truncated)
    reply.count(gen, timer)
    return reply


def answer_map_reduce(qa: ChatQA, request: Request, plan: Plan, timer: Timer, on_text: OnText,
                      decline: bool) -> Reply:  # fmt: skip
    """Every section asked in document order (map), the answers combined until one remains (reduce); the
    sections' KV prefixes are kept for the next question (chatqa.mapreduce)."""
    from chatqa.progress import bar

    sections, prompts, mr = plan.map_reduce, plan.map_reduce_prompts, qa.config.mapreduce
    assert sections is not None and prompts is not None  # ChatQA.plan makes both when the route is map-reduce
    generator = qa._loaded("generator", timer)
    timer.quiet()  # the map calls get a bar of their own
    with bar(request.progress, sections.map_calls, "map-reduce: map calls") as advance:
        result = mapreduce.run(
            generator, sections, request.question, prompts, map_budget=mr.map_max_new_tokens,
            reduce_budget=mr.reduce_max_new_tokens, answer_budget=request.budget, count=qa.tokenizer.count,
            on_map=lambda done, total: advance(f"section {done}/{total}"), on_text=on_text,
        )  # fmt: skip
    reply = Reply(result.text, [s.citation() for s in result.cited], result.final_prompt, note=result.summary(),
                  usage=result.usage(), partials=result.partials)  # fmt: skip
    for name, stage in result.stages.items():
        reply.prompt_tokens += stage.prompt_tokens
        reply.completion_tokens += stage.completion_tokens
        reply.cached_tokens += stage.cached_tokens
        timer.add("prefill", stage.prefill_s)
        timer.add("decode", stage.decode_s)
        timer.add(name, stage.seconds)
    return reply


RouteFn = Callable[[ChatQA, Request, Plan, Timer, OnText, bool], Reply]
ROUTES: dict[str, RouteFn] = {"rag": answer_rag, "long": answer_long, "map-reduce": answer_map_reduce}


def _answer(request: Request, plan: Plan, route: Route, reply: Reply, attempts: list[dict[str, Any]],
            timer: Timer) -> Answer:  # fmt: skip
    seconds = {k: v for k, v in timer.seconds.items() if k != "load"}
    seconds["load"] = timer.seconds.get("load", 0.0)
    seconds["total"] = timer.total()
    return Answer(
        answer=reply.text,
        route=route.route,
        reason=route.reason,
        mode=request.mode,
        question=request.question,
        citations=reply.citations,
        usage={
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "cached_tokens": reply.cached_tokens,
            "document_tokens": plan.doc_tokens,
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
            **reply.usage,
        },
        attempts=attempts,
        truncated=reply.truncated,
        partials=reply.partials,
        prompt_sha256=hashlib.sha256(reply.prompt.encode("utf-8")).hexdigest(),
    )


def _load_embedder(config: Config) -> Any:
    from chatqa.embedding import Embedder

    return Embedder(config.retriever)


def _stages() -> Any:
    from chatqa.progress import Stages

    return Stages()


def _after(first: Callable[[], None], on_text: Callable[[str], None]) -> Callable[[str], None]:
    """``on_text`` that runs ``first`` once, before the first piece of text."""
    done = [False]

    def call(text: str) -> None:
        if not done[0]:
            done[0] = True
            first()
        on_text(text)

    return call


def _reading(qa: ChatQA, timer: Timer, prompt: str) -> dict[str, Any]:
    """On a terminal: name the stage, and ask the generator to report its reading (a bar with an ETA when the
    backend reads in batches). Off a terminal: nothing, and no extra argument for the generator."""
    if timer.stages is None:
        return {}
    n = qa.tokenizer.count(prompt)  # a tokenization: only for a person watching
    timer.show(f"reading {n:,} prompt tokens")
    return {"on_prefill": timer.stages.counter(f"reading {n:,} prompt tokens")}


def _cite(chunk: Chunk, score: float) -> dict[str, Any]:
    return {
        "chunk": chunk.id,
        "doc": chunk.doc_name,
        "lines": [chunk.line_start, chunk.line_end],
        "pages": list(chunk.pages) if chunk.pages else None,  # PDFs: first and last page
        "score": round(float(score), 4),
    }


def _named(index: DocIndex, docs: Sequence[Document]) -> DocIndex:
    """The index with its chunks named as today's documents are: one text is one index (an eval names a book
    after each sample), and a citation shows the name it was asked under, not the name it was built under."""
    chunks = _renamed(index.chunks, docs)
    return index if chunks is index.chunks else replace(index, chunks=chunks)


def _renamed(chunks: list[Chunk], docs: Sequence[Document]) -> list[Chunk]:
    """``chunks`` (the same list when nothing differs) with each one's document name taken from ``docs``."""
    names = [d.name for d in docs]
    if all(c.doc_name == names[c.doc] for c in chunks):
        return chunks
    return [c if c.doc_name == names[c.doc] else replace(c, doc_name=names[c.doc]) for c in chunks]


def _same_docs(index: DocIndex, docs: Sequence[Document]) -> bool:
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
