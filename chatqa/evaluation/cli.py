"""``chatqa eval run|score|report``: the command-line face of :mod:`chatqa.evaluation.runner` and ``.report``.

Registering imports nothing heavy, so ``chatqa --help`` stays fast; option errors (a bad suite name or
``--lengths``) are one ``chatqa: error:`` line and exit 2, raised before any model is loaded.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from chatqa.errors import InputError


def register(sub: argparse._SubParsersAction, extra: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    p = sub.add_parser("eval", help="batch RAG-vs-LC benchmarks: run a suite, score official predictions, report")
    inner = p.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    run = inner.add_parser("run", help="run a suite for each mode into a resumable run folder")
    run.add_argument("--suite", required=True, help="suite name in eval/suites/ (e.g. passkey) or a YAML path")
    run.add_argument("--profile", default="default", help="profile name in configs/ or a YAML path")
    run.add_argument("--modes", default="rag,long,auto", help="comma-separated: rag,long,auto,self-route")
    run.add_argument("--lengths", help="context lengths for generated suites, e.g. 2k,4k,32k (k = 1024)")
    run.add_argument("--depths", help="needle depths for synthetic suites, e.g. 0,0.5,1")
    run.add_argument("--n", type=int, help="samples per cell (synthetic: per length x depth)")
    run.add_argument("--limit", type=int, help="at most N samples per task x length x depth (smoke runs)")
    run.add_argument("--seed", type=int, help="seed of generated samples (default: the suite's)")
    run.add_argument("--data-dir", help="data folder (required for infinitebench; default ../shared/data)")
    run.add_argument("--out", default="runs", help="root of run folders (default ./runs)")
    run.add_argument("--top-k", type=int, help="chunks retrieved for RAG (default: profile)")
    run.add_argument("--truncate", choices=["middle"], help="cut the middle of LC inputs over the window")
    run.add_argument("--variant", help="named prompt variant (LongEval completion: longchat, answer-opening)")
    run.add_argument(
        "--judge",
        metavar="PROFILE",
        help="LongEval topics: also score with this profile's model as "
        "LongChat's LLM judge (containment stays the default score)",
    )
    score = inner.add_parser("score", help="score official prediction files (preds_<task>.jsonl)")
    score.add_argument("--suite", default="infinitebench", help="the suite whose metrics apply")
    score.add_argument("--preds", required=True, help="folder of preds_<task>.jsonl files")
    report = inner.add_parser("report", help="rebuild summary, plots and report.md of a run folder")
    report.add_argument("run_dir", help="a run folder (holding config.json and rows.jsonl)")
    report.add_argument(
        "--rescore",
        action="store_true",
        help="score the stored predictions again with the "
        "current scorers first (for scorer fixes; prompt changes need a re-run)",
    )
    for q in (run, score, report):
        q.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    extra["eval"] = cmd_eval


def cmd_eval(args: argparse.Namespace) -> int:
    return {"run": _run, "score": _score, "report": _report}[args.eval_command](args)


def _run(args: argparse.Namespace) -> int:
    from chatqa.evaluation.report import score_table
    from chatqa.evaluation.runner import run_suite
    from chatqa.evaluation.suites import load_suite, parse_lengths
    from chatqa.progress import interactive

    suite = load_suite(args.suite)  # fail on a bad name or option before loading any model
    lengths = parse_lengths(args.lengths) if args.lengths else None
    depths = parse_depths(args.depths) if args.depths else None
    for name in ("n", "limit", "top_k"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    result = run_suite(
        suite, args.profile, modes=[m.strip() for m in args.modes.split(",") if m.strip()], lengths=lengths,
        depths=depths, n=args.n, limit=args.limit, seed=args.seed, data_dir=args.data_dir, out=args.out,
        top_k=args.top_k, truncate=args.truncate, progress=interactive() and not args.json,
        command=shlex.join(["chatqa", *sys.argv[1:]]), variant=args.variant, judge=args.judge,
    )  # fmt: skip
    s = result.summary
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), "added": result.added, "skipped": result.skipped, **s}))
        return 0
    modes = list(dict.fromkeys(g["mode"] for g in s["groups"]))
    print("\n".join(score_table(s["groups"], modes)))
    print(f"\n{result.added} new row(s), {result.skipped} already done; {s['errors']} error(s), "
          f"{s['refused']} LC-impossible; compute {s['compute_seconds']:.1f}s")  # fmt: skip
    print(f"report: {result.run_dir / 'report.md'}")
    return 0


def parse_depths(text: str) -> list[float]:
    """``"0,0.5,1"`` -> needle depths as fractions of the context."""
    try:
        depths = [float(d) for d in text.split(",")]
    except ValueError:
        raise InputError(f"bad depths {text!r}: use fractions such as 0,0.5,1") from None
    if not all(0.0 <= d <= 1.0 for d in depths):
        raise InputError(f"bad depths {text!r}: each depth must be between 0 and 1")
    return depths


def _score(args: argparse.Namespace) -> int:
    from chatqa.evaluation.report import score_predictions

    scores = score_predictions(args.preds, args.suite)
    if args.json:
        print(json.dumps(scores))
    else:
        width = max(map(len, scores))
        print("\n".join(f"{task:<{width}}  {value:6.2f}" for task, value in scores.items()))
    return 0


def _report(args: argparse.Namespace) -> int:
    from chatqa.evaluation.report import rescore, write_report

    run = Path(args.run_dir)
    if not (run / "config.json").is_file():
        raise InputError(f"{run}: not a run folder (no config.json)")
    changed = rescore(run) if args.rescore else None
    summary = write_report(run)
    if changed is not None:
        summary["rescored_changed"] = changed
    if args.json:
        print(json.dumps({"run_dir": str(run), **summary}))
    else:
        print(f"{summary['rows']} rows -> {run / 'report.md'}, summary.json, summary.csv, score_vs_*.png")
    return 0
