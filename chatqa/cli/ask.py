"""``chatqa ask`` (one question) and ``chatqa chat`` (one question per line on stdin) about documents."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chatqa.cli._app import (
    ChunkTokens,
    Docs,
    Json,
    MaxMapCalls,
    MaxNewTokens,
    Mode,
    Profile,
    Retrieval,
    TopK,
    Truncate,
    app,
)
from chatqa.errors import ChatQAError

if TYPE_CHECKING:  # pragma: no cover
    from chatqa.pipeline import Answer, ChatQA


def load_qa(profile: str, chunk_tokens: int | None = None) -> ChatQA:
    """The pipeline for a command: the profile with the command line's overrides (validated by the config)."""
    from chatqa.pipeline import ChatQA

    return ChatQA.from_profile(profile, **{"chunking.chunk_tokens": chunk_tokens})


def citation_text(c: dict[str, Any]) -> str:
    """``name:first-last``, then ``p. N`` or ``p. N-M`` for PDFs, then the chunk; the name escaped so that a
    newline or an escape code in a file name cannot split or forge the line."""
    from chatqa.ingest import printable

    text = f"{printable(c['doc'])}:{c['lines'][0]}-{c['lines'][1]}"
    pages = c.get("pages")
    if pages:
        text += f" p. {pages[0]}" if pages[0] == pages[1] else f" p. {pages[0]}-{pages[1]}"
    return text + (f" (chunk {c['chunk']})" if c.get("chunk") is not None else "")


def print_answer(answer: Answer, streamed: bool) -> None:
    if not streamed:
        print(answer.answer)
    else:
        print()
    cites = (_sections(answer.citations) if answer.route == "map-reduce"
             else ", ".join(citation_text(c) for c in answer.citations))  # fmt: skip
    u = answer.usage
    s = u["seconds"]
    stages = " ".join(f"{k} {v:.2f}s" for k, v in s.items() if k != "total" and v >= 0.005)
    print(f"\nroute: {answer.route} ({answer.reason})")
    if answer.attempts:
        print(f"first try (rag, declined): {answer.attempts[0]['answer']!r}")
    print(f"citations: {cites}")
    print(
        f"cost: {u['prompt_tokens']:,} prompt + {u['completion_tokens']:,} answer tokens "
        f"({u['cached_tokens']:,} cached); {s['total']:.2f}s [{stages}]"
    )
    if "map_calls" in u:
        m, r = u["stages"]["map"], u["stages"]["reduce"]
        print(f"map-reduce: {u['sections']} sections; map {m['calls']} calls, {m['prompt_tokens']:,} prompt "
              f"({m['cached_tokens']:,} cached) + {m['completion_tokens']:,} answer tokens, {m['seconds']:.1f}s; "
              f"reduce {r['calls']} calls in {u['reduce_levels']} level(s), {r['prompt_tokens']:,} prompt + "
              f"{r['completion_tokens']:,} answer tokens, {r['seconds']:.1f}s")  # fmt: skip


def _sections(citations: list[dict[str, Any]]) -> str:
    """Map-reduce cites every section whose notes reached the answer: consecutive ones are merged into ranges,
    so a whole book reads as one line range instead of hundreds of entries (--json lists each)."""
    from chatqa.ingest import printable

    runs: list[list[dict[str, Any]]] = []
    for c in citations:
        if runs and runs[-1][-1]["doc"] == c["doc"] and runs[-1][-1]["section"] + 1 == c["section"]:
            runs[-1].append(c)
        else:
            runs.append([c])
    text = ", ".join(
        f"{printable(r[0]['doc'])}:{r[0]['lines'][0]}-{r[-1]['lines'][1]} "
        f"(chunks {r[0]['chunks'][0]}-{r[-1]['chunks'][-1]}, {len(r)} section{'s' if len(r) > 1 else ''})"
        for r in runs
    )
    return text or "none (no section bore on the question)"


def _printer() -> Callable[[str], None]:
    """Streams the answer to stdout as it is generated, without the space a tokenizer puts before its first
    word (the final answer is stripped too)."""
    started = False

    def show(text: str) -> None:
        nonlocal started
        if not started:
            text = text.lstrip()
            started = bool(text)
        if text:
            print(text, end="", flush=True)

    return show


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    doc: Docs,
    profile: Profile = "default",
    json_out: Json = False,
    mode: Mode = None,
    top_k: TopK = None,
    retrieval: Retrieval = None,
    truncate: Truncate = None,
    max_new_tokens: MaxNewTokens = None,
    chunk_tokens: ChunkTokens = None,
    max_map_calls: MaxMapCalls = None,
) -> None:
    """Answer one question about documents."""
    from chatqa.progress import interactive

    if not question.strip():
        raise ChatQAError("the question is empty")
    qa = load_qa(profile, chunk_tokens)
    stream = not json_out and sys.stdout.isatty()
    answer = qa.ask(question, docs=doc, on_text=_printer() if stream else None, mode=mode, top_k=top_k,
                    progress=interactive() and not json_out, retrieval=retrieval, truncate=truncate,
                    max_new_tokens=max_new_tokens, max_map_calls=max_map_calls)  # fmt: skip
    if json_out:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
    else:
        print_answer(answer, streamed=stream)


@app.command()
def chat(
    doc: Docs,
    profile: Profile = "default",
    json_out: Json = False,
    mode: Mode = None,
    top_k: TopK = None,
    retrieval: Retrieval = None,
    truncate: Truncate = None,
    max_new_tokens: MaxNewTokens = None,
    chunk_tokens: ChunkTokens = None,
    max_map_calls: MaxMapCalls = None,
) -> None:
    """Multi-turn questions about documents (one per line on stdin)."""
    from chatqa.progress import interactive

    qa = load_qa(profile, chunk_tokens)
    docs = qa.documents(doc)
    options: dict[str, Any] = {"mode": mode, "top_k": top_k, "retrieval": retrieval, "truncate": truncate,
                               "max_new_tokens": max_new_tokens, "max_map_calls": max_map_calls}  # fmt: skip
    tty = sys.stdin.isatty()
    messages: list[dict[str, str]] = []
    while True:
        if tty:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        question = line.strip()
        if question in ("exit", "quit", ":q"):
            break
        if not question:
            continue
        messages.append({"role": "user", "content": question})
        answer = qa.ask(docs=docs, messages=messages, progress=interactive() and not json_out, **options)
        messages.append({"role": "assistant", "content": answer.answer})
        if json_out:
            print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
        else:
            print(answer.answer)
            print(f"  [{answer.route}: {answer.reason}]", flush=True)
