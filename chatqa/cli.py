"""The ``chatqa`` command line.

Output contract: the answer goes to stdout; route, citations and costs follow it (or one JSON object with
``--json`` and nothing else). Progress and notices go to stderr and only on a terminal. A user error prints one
``chatqa: error: ...`` line and exits 2; nothing already built is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from chatqa.errors import ChatQAError

EXIT_USER = 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default", help="profile name in configs/ or a YAML path")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")


def _doc_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--doc", action="append", required=required, metavar="PATH",
        help="a .txt/.md file, a folder of them, or - for stdin (repeatable)",
    )  # fmt: skip


def _ask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["rag", "long", "auto", "self-route"], help="route (default: profile)")
    p.add_argument("--top-k", type=int, help="chunks retrieved for RAG (default 5)")
    p.add_argument("--retrieval", choices=["dense", "bm25", "hybrid"], help="retrieval method")
    p.add_argument("--truncate", choices=["middle"], help="cut the middle of a too-long document for --mode long")
    p.add_argument("--max-new-tokens", type=int, help="answer length limit")
    p.add_argument("--chunk-tokens", type=int, help="chunk size in generator tokens (default 1200)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatqa", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ask = sub.add_parser("ask", help="answer one question about documents")
    _common(ask)
    _doc_args(ask)
    _ask_args(ask)
    ask.add_argument("question", help="the question")

    chat = sub.add_parser("chat", help="multi-turn questions about documents (one per line on stdin)")
    _common(chat)
    _doc_args(chat)
    _ask_args(chat)

    index = sub.add_parser("index", help="build or refresh the index of documents ahead of time")
    _common(index)
    _doc_args(index)
    index.add_argument("--chunk-tokens", type=int, help="chunk size in generator tokens (default 1200)")
    index.add_argument("--rebuild", action="store_true", help="rebuild even if an up-to-date index exists")

    info = sub.add_parser("info", help="models, windows, cache and index folders")
    _common(info)

    from chatqa.commands import register_extra

    register_extra(sub)
    return parser


def _qa(args: argparse.Namespace) -> Any:
    from chatqa.pipeline import ChatQA

    overrides = {"chunking.chunk_tokens": getattr(args, "chunk_tokens", None)}
    return ChatQA.from_profile(args.profile, **overrides)


def _ask_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "mode": args.mode,
        "top_k": args.top_k,
        "retrieval": args.retrieval,
        "truncate": args.truncate,
        "max_new_tokens": args.max_new_tokens,
    }


def print_answer(answer: Any, streamed: bool) -> None:
    if not streamed:
        print(answer.answer)
    else:
        print()
    cites = ", ".join(
        f"{c['doc']}:{c['lines'][0]}-{c['lines'][1]}" + (f" (chunk {c['chunk']})" if c["chunk"] is not None else "")
        for c in answer.citations
    )
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


def cmd_ask(args: argparse.Namespace) -> int:
    if not args.question.strip():
        raise ChatQAError("the question is empty")
    qa = _qa(args)
    stream = not args.json and sys.stdout.isatty()
    on_text = (lambda t: print(t, end="", flush=True)) if stream else None
    from chatqa.progress import interactive

    answer = qa.ask(args.question, docs=args.doc, on_text=on_text, progress=interactive() and not args.json,
                    **_ask_kwargs(args))  # fmt: skip
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
    else:
        print_answer(answer, streamed=stream)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    qa = _qa(args)
    docs = qa.documents(args.doc)
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
        answer = qa.ask(docs=docs, messages=messages, **_ask_kwargs(args))
        messages.append({"role": "assistant", "content": answer.answer})
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
        else:
            print(answer.answer)
            print(f"  [{answer.route}: {answer.reason}]", flush=True)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from chatqa.progress import interactive

    qa = _qa(args)
    index = qa.index(args.doc, rebuild=args.rebuild, progress=interactive() and not args.json)
    m = index.manifest
    out = {
        "path": str(index.path),
        "built": index.built,
        "documents": [d["name"] for d in m["documents"]],
        "chunks": len(index.chunks),
        "tokens": index.n_tokens,
        "vectors": int(index.faiss.ntotal),
        "faiss": m.get("faiss"),
        "stats": m.get("stats", {}),
    }
    if args.json:
        print(json.dumps(out))
    else:
        verb = "built" if index.built else "up to date (reused)"
        print(f"{verb}: {out['path']}")
        print(f"{len(out['documents'])} document(s), {out['chunks']} chunks, {out['tokens']:,} tokens, "
              f"{out['vectors']} vectors ({out['faiss']})")  # fmt: skip
        if index.built:
            st = out["stats"]
            total = st["chunk_s"] + st["embed_s"] + st["index_s"]
            print(f"took {total:.1f}s (chunk {st['chunk_s']:.1f}s, embed {st['embed_s']:.1f}s, "
                  f"index {st['index_s']:.1f}s); {st['tokens'] / max(total, 1e-9):,.0f} tokens/s")  # fmt: skip
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from chatqa.info import collect

    data = collect(args.profile)
    if args.json:
        print(json.dumps(data))
        return 0
    for key, value in data.items():
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print(f"  - {item}")
        else:
            print(f"{key}: {value}")
    return 0


COMMANDS = {"ask": cmd_ask, "chat": cmd_chat, "index": cmd_index, "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from chatqa import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USER
    from chatqa.commands import EXTRA
    from chatqa.progress import quiet_libraries

    quiet_libraries()
    handler = COMMANDS.get(args.command) or EXTRA[args.command]
    try:
        return handler(args)
    except ChatQAError as exc:
        print(f"chatqa: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("chatqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
