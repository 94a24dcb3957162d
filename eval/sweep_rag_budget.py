"""The RAG budget sweep: accuracy of RAG alone for chunk sizes x top-k on a question set, one run folder per cell.

Why: a small model drowns in ChatQA 2's 5 x 1,200-token context (issue 15: Qwen 0.5B answered 0/5 with it and
5/10 with 4 x 300). Each profile's default ``chunk_tokens`` and ``top_k`` are chosen from this table, so that
chunks + question + answer fit what the model can really read. Each chunk size builds its index once (a new
index folder per size: the index key includes the chunking), and every k reuses it. Cells resume (rows.jsonl),
so the sweep can run in pieces:

    python eval/sweep_rag_budget.py --profile default --chunks 150,300 --ks 2,4,8
    python eval/sweep_rag_budget.py --profile default --summary     # table of every finished cell
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chatqa.evaluation.question_sets import wilson_interval  # noqa: E402
from chatqa.evaluation.rundir import read_rows  # noqa: E402
from chatqa.files import write_atomic  # noqa: E402

OUT = REPO / "eval" / "results" / "rag-budget"


def sweep(profile: str, suite: str, chunks: list[int], ks: list[int], out: Path, command: str) -> None:
    from chatqa.evaluation.runner import run_suite
    from chatqa.pipeline import ChatQA

    for chunk in chunks:
        qa = ChatQA.from_profile(profile, **{"chunking.chunk_tokens": chunk})
        for k in ks:
            res = run_suite(suite, qa=qa, modes=["rag"], top_k=k, out=out, command=command)
            print(f"c{chunk} k{k}: {res.run_dir.name} (+{res.added} rows)", file=sys.stderr, flush=True)


def summary(out: Path, profile: str) -> list[dict[str, object]]:
    """One row per finished cell: accuracy with its Wilson 95% interval, prompt tokens and seconds per question."""
    table = []
    for cfg_path in sorted(out.rglob("config.json")):
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        if config["profile"]["name"] != profile:
            continue
        rows = [r for r in read_rows(cfg_path.parent / "rows.jsonl", repair=False) if r["mode"] == "rag"]
        if not rows:
            continue
        hits = sum(r["score"] or 0.0 for r in rows)
        low, high = wilson_interval(hits, len(rows))
        tokens = sorted(r["input_tokens"] for r in rows)
        secs = sorted(r["seconds"]["total"] for r in rows)
        table.append({
            "chunk_tokens": config["profile"]["chunking"]["chunk_tokens"], "top_k": config["options"]["top_k"],
            "n": len(rows), "correct": int(hits), "accuracy": round(hits / len(rows), 3),
            "ci95": [round(low, 3), round(high, 3)], "median_prompt_tokens": tokens[len(tokens) // 2],
            "max_prompt_tokens": tokens[-1], "median_seconds": round(secs[len(secs) // 2], 2),
            "errors": sum(1 for r in rows if r["error"]), "run": cfg_path.parent.name,
        })  # fmt: skip
    return sorted(table, key=lambda r: (r["chunk_tokens"], r["top_k"]))


def markdown(table: list[dict[str, object]]) -> str:
    out = ["| chunk tokens | k | correct | accuracy [95% CI] | median / max prompt tokens | median s |",
           "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in table:
        low, high = r["ci95"]  # type: ignore[misc]
        out.append(f"| {r['chunk_tokens']} | {r['top_k']} | {r['correct']}/{r['n']} | {r['accuracy']:.0%} "
                   f"[{low:.0%}, {high:.0%}] | {r['median_prompt_tokens']} / {r['max_prompt_tokens']} | "
                   f"{r['median_seconds']} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--suite", default="novels-qa-budget")
    ap.add_argument("--chunks", default="150,300,600,1200")
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--summary", action="store_true", help="measure nothing: print and write the table")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.summary:
        command = "python eval/sweep_rag_budget.py " + " ".join(sys.argv[1:])
        sweep(args.profile, args.suite, [int(c) for c in args.chunks.split(",")],
              [int(k) for k in args.ks.split(",")], out, command)  # fmt: skip
    table = summary(out, args.profile)
    text = markdown(table)
    print(text)
    record = {"profile": args.profile, "suite": args.suite, "load_avg_now": os.getloadavg(), "cells": table}
    write_atomic(out / f"{args.profile}.summary.json", json.dumps(record, indent=1))
    write_atomic(out / f"{args.profile}.summary.md",
                 f"# RAG budget sweep: profile {args.profile}, suite {args.suite}\n\n{text}\n")  # fmt: skip


if __name__ == "__main__":
    main()
