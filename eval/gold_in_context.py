"""Retrieval vs reading: was an accepted answer in the context RAG gave the reader? No generation needed.

Why: a RAG miss is either a retrieval miss (the answer never reached the model) or a reading miss (it was there
and the model did not give it), and the two call for different fixes (retriever and budget vs generator). New
runs record ``gold_in_context`` on every RAG row (chatqa.evaluation.runner); this script

* backfills a run folder made before that (``--run``): each RAG row's chunks are retrieved again with the run's
  profile, and its prompt rebuilt; a row is only marked when the rebuilt prompt hashes to the row's recorded
  ``prompt_key`` (so the context checked is provably the one the reader saw), then the report is rebuilt;
* measures the retrieval ceiling at other budgets (``--budgets 150x4,150x8,300x4``: chunk tokens x top-k),
  retrieval only, into ``eval/results/retrieval-ceiling/<suite>__<profile>.json`` and ``.md``.

    python eval/gold_in_context.py --profile default --run eval/results/novels-qa/<run folder>
    python eval/gold_in_context.py --profile default --suite novels-qa --budgets 150x4,150x8,300x4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chatqa.evaluation.question_sets import wilson_interval  # noqa: E402
from chatqa.files import write_atomic  # noqa: E402

OUT = REPO / "eval" / "results" / "retrieval-ceiling"


def rebuilt(qa: Any, spec: Any, sample: Any, ask: dict[str, Any]) -> tuple[Any, list[Any], dict[str, str]]:
    """The sample's document, the chunks RAG reads for it, and the generation keys of its two RAG prompts
    (plain, and Self-Route's with the decline instruction), built by the pipeline's own functions."""
    from chatqa.evaluation import suites as st
    from chatqa.evaluation.runner import ask_options
    from chatqa.generation import CachingGenerator
    from chatqa.ingest import Document
    from chatqa.pipeline import rag_context
    from chatqa.prompting import format_chunks
    from chatqa.timing import Timer

    doc = Document.from_text(sample.context, sample.id)
    request = qa.request(st.question_for(spec, sample), [doc], sample.messages,
                         **ask_options(qa, spec, sample, "rag", ask))  # fmt: skip
    plan = qa.plan(request)
    chunks, _, _ = rag_context(qa, request, plan.room, Timer())
    keys = {}
    for name, frame in (("rag", plan.frame), ("decline", plan.decline_frame)):
        prompt = frame.fill(format_chunks(chunks))
        keys[name] = CachingGenerator.key(prompt.text, request.budget, prompt.stop)
    return doc, chunks, keys


def samples_of(spec: Any, data_dir: str | None = None) -> list[Any]:
    from chatqa.evaluation import suites as st

    opts = st.resolve_options(spec, st.SuiteOptions(data_dir=data_dir))
    return st.build_samples(spec, opts, lambda text: len(text.split()))  # lengths are not used here


def backfill(run: Path, qa: Any, spec: Any, data_dir: str | None = None) -> dict[str, int]:
    """Mark the run's RAG rows with ``gold_in_context`` where the rebuilt prompt matches the recorded one."""
    from chatqa.evaluation import suites as st
    from chatqa.evaluation.report import write_report
    from chatqa.evaluation.rundir import lock, read_rows, rewrite_rows
    from chatqa.evaluation.runner import context_fields

    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    opts = config["options"]
    ask = {"top_k": opts["top_k"], "truncate": opts["truncate"], "variant": opts.get("variant")}
    counts = {"marked": 0, "mismatch": 0, "not_rag": 0}
    with lock(run):
        rows = read_rows(run / "rows.jsonl", repair=False)
        by_id = {(s.task, s.id): s for s in samples_of(spec, data_dir)}
        for key in dict.fromkeys((r["task"], r["id"]) for r in rows):
            todo = [r for r in rows if (r["task"], r["id"]) == key and r["route"] == "rag" and not r.get("error")]
            counts["not_rag"] += sum(1 for r in rows if (r["task"], r["id"]) == key) - len(todo)
            if not todo:
                continue
            sample = by_id[key]
            doc, chunks, keys = rebuilt(qa, spec, sample, ask)
            for r in todo:
                if r.get("prompt_key") not in keys.values():
                    counts["mismatch"] += 1
                    continue
                metric = st.metric_for(spec, sample.task)
                fields = context_fields(qa, doc, [{"chunk": c.id} for c in chunks], metric, r["gold"])
                r.update(fields)
                counts["marked"] += bool(fields)
            print(f"{key[1]}: {len(chunks)} chunks", file=sys.stderr, flush=True)
        rewrite_rows(run / "rows.jsonl", rows)
    write_report(run)
    return counts


def ceiling(qa: Any, spec: Any, budgets: list[tuple[int, int]], data_dir: str | None = None) -> list[dict[str, Any]]:
    """Per budget (chunk tokens, top-k): for each answerable question, whether RAG's context holds an answer."""
    from chatqa.evaluation import suites as st
    from chatqa.evaluation.runner import context_fields
    from chatqa.pipeline import ChatQA

    samples = [s for s in samples_of(spec, data_dir) if s.answers]
    table = []
    for chunk_tokens, k in budgets:
        cfg = qa.config.replace(**{"chunking.chunk_tokens": chunk_tokens})
        other = qa if chunk_tokens == qa.config.chunking.chunk_tokens else ChatQA(
            cfg, generator=qa.generator, embedder=qa.embedder)  # fmt: skip
        ask = {"top_k": k, "truncate": None, "variant": None}
        found: dict[str, bool] = {}
        start = time.perf_counter()
        for sample in samples:
            doc, chunks, _ = rebuilt(other, spec, sample, ask)
            fields = context_fields(other, doc, [{"chunk": c.id} for c in chunks], st.metric_for(spec, sample.task),
                                    st.gold_for(spec, sample))  # fmt: skip
            found[sample.id] = bool(fields.get("gold_in_context"))
        hits = sum(found.values())
        low, high = wilson_interval(hits, len(found))
        table.append({"chunk_tokens": chunk_tokens, "top_k": k, "n": len(found), "gold_in_context": hits,
                      "rate": round(hits / len(found), 3), "ci95": [round(low, 3), round(high, 3)],
                      "seconds": round(time.perf_counter() - start, 1), "per_question": found})  # fmt: skip
        print(f"{chunk_tokens}x{k}: {hits}/{len(found)}", file=sys.stderr, flush=True)
    return table


def markdown(suite: str, profile: str, table: list[dict[str, Any]]) -> str:
    lines = [f"# Retrieval ceiling: suite {suite}, profile {profile}", "",
             "Answerable questions whose RAG context (the chunks the reader is given) contains an accepted answer "
             "by the suite's own containment rule; retrieval only, no generation.", "",
             "| chunk tokens | top-k | gold in context | rate [95% Wilson] |",
             "| ---: | ---: | ---: | --- |"]  # fmt: skip
    for r in table:
        lines.append(f"| {r['chunk_tokens']} | {r['top_k']} | {r['gold_in_context']}/{r['n']} | {r['rate']:.1%} "
                     f"[{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}] |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--suite", default="novels-qa")
    ap.add_argument("--run", help="a run folder to backfill gold_in_context into (its RAG rows)")
    ap.add_argument("--budgets", help="chunk tokens x top-k to measure, e.g. 150x4,150x8,300x4")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    from chatqa.evaluation.suites import load_suite
    from chatqa.pipeline import ChatQA

    spec = load_suite(args.suite)
    qa = ChatQA.from_profile(args.profile)
    if args.run:
        print(json.dumps(backfill(Path(args.run), qa, spec, args.data_dir)))
    if args.budgets:
        budgets = [tuple(int(x) for x in b.split("x")) for b in args.budgets.split(",")]
        table = ceiling(qa, spec, budgets, args.data_dir)  # type: ignore[arg-type]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{spec.name}__{args.profile}"
        record = {
            "suite": spec.name,
            "profile": args.profile,
            "load_avg_end": os.getloadavg(),
            "command": "python eval/gold_in_context.py " + " ".join(sys.argv[1:]),
            "budgets": table,
        }
        write_atomic(out / f"{stem}.json", json.dumps(record, indent=1) + "\n")
        text = markdown(spec.name, args.profile, table)
        write_atomic(out / f"{stem}.md", text)
        print(text)


if __name__ == "__main__":
    main()
