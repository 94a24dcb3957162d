"""``chatqa batch``: answer a file of questions into a JSONL file, resumably, here or on a Ray cluster."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from chatqa.cli._app import ChunkTokens, Json, MaxNewTokens, Mode, Profile, Retrieval, TopK, Truncate, app
from chatqa.cli._executor import CpusPerWorker, ExecutorName, GpusPerWorker, RayAddress, Workers, make


@app.command()
def batch(
    questions: Annotated[str, typer.Option("--questions", help="JSONL (question, id, docs, messages) or one per line")],
    out: Annotated[str, typer.Option("--out", help="answers, one JSON line per question (resumed if it exists)")],
    doc: Annotated[
        list[str] | None,
        typer.Option("--doc", metavar="PATH", help="document(s) for questions that name none (repeatable)"),
    ] = None,
    profile: Profile = "default",
    json_out: Json = False,
    mode: Mode = None,
    top_k: TopK = None,
    retrieval: Retrieval = None,
    truncate: Truncate = None,
    max_new_tokens: MaxNewTokens = None,
    chunk_tokens: ChunkTokens = None,
    executor: ExecutorName = "local",
    workers: Workers = None,
    cpus_per_worker: CpusPerWorker = None,
    gpus_per_worker: GpusPerWorker = None,
    ray_address: RayAddress = None,
) -> None:
    """Answer many questions; one JSON line each, as `ask --json` prints it, written as each finishes.

    Questions on the same documents run together (one index, a reused KV prefix). A rerun skips answered ids
    and retries error rows. Exits 1 when some questions ended as error rows."""
    from chatqa.batch import read_questions, run_batch
    from chatqa.pipeline import ChatQA
    from chatqa.progress import interactive

    items = read_questions(questions, doc or [])  # a bad file fails before any model loads
    overrides = {"routing.mode": mode, "retrieval.top_k": top_k, "retrieval.method": retrieval,
                 "routing.truncate": truncate, "generator.max_new_tokens": max_new_tokens,
                 "chunking.chunk_tokens": chunk_tokens}  # fmt: skip
    qa = ChatQA.from_profile(profile, **overrides)
    with make(executor, qa, workers, cpus_per_worker, gpus_per_worker, ray_address) as runner:
        result = run_batch(items, out, qa=qa, executor=runner, progress=interactive() and not json_out)
    if json_out:
        print(json.dumps(result.to_dict()))
    else:
        share = f" ({result.cached_tokens / result.prompt_tokens:.0%})" if result.prompt_tokens else ""
        print(f"{result.answered} answered, {result.errors} error row(s), {result.skipped} already done -> {out}")
        print(f"prompt tokens: {result.prompt_tokens:,}, served from cache: {result.cached_tokens:,}{share}; "
              f"{result.seconds:.1f}s")  # fmt: skip
        if result.errors:
            print(f"run the same command again to retry the {result.errors} error row(s)", file=sys.stderr)
    if result.errors:
        raise typer.Exit(1)
