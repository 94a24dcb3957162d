"""``chatqa eval run|score|report``: the command-line face of :mod:`chatqa.evaluation.runner` and ``.report``.

Registering imports nothing from the evaluation package, so ``chatqa ask`` never loads it; option errors (a
bad suite name or ``--lengths``) are one ``chatqa: error:`` line and exit 2, raised before any model is loaded.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from chatqa.cli._app import Json, Profile, TopK, Truncate, app
from chatqa.cli._executor import CpusPerWorker, ExecutorName, GpusPerWorker, RayAddress, Workers
from chatqa.errors import InputError

evaluate = typer.Typer(help="batch RAG-vs-LC benchmarks: run a suite, score official predictions, report",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(evaluate, name="eval")


@evaluate.command()
def run(
    suite: Annotated[str, typer.Option(help="suite name in eval/suites/ (e.g. passkey) or a YAML path")],
    profile: Profile = "default",
    json_out: Json = False,
    modes: Annotated[str, typer.Option(help="comma-separated: rag,long,auto,self-route,map-reduce")] = "rag,long,auto",
    lengths: Annotated[str | None, typer.Option(help="context lengths for generated suites, e.g. 2k,4k")] = None,
    depths: Annotated[str | None, typer.Option(help="needle depths for synthetic suites, e.g. 0,0.5,1")] = None,
    n: Annotated[int | None, typer.Option("--n", help="samples per cell (synthetic: per length x depth)")] = None,
    limit: Annotated[int | None, typer.Option(help="at most N samples per task x length x depth")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of generated samples (default: the suite's)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="data folder (infinitebench; default ../shared/data)")] = None,
    out: Annotated[str, typer.Option(help="root of run folders")] = "runs",
    top_k: TopK = None,
    truncate: Truncate = None,
    variant: Annotated[
        str | None,
        typer.Option(
            help="named prompt variant (LongEval completion: longchat, answer-opening; "
            "InfiniteBench chat: answer-opening)"
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            metavar="PROFILE",
            help="LongEval topics: also score with this profile's model as LongChat's "
            "LLM judge (containment stays the default score)",
        ),
    ] = None,
    executor: ExecutorName = "local",
    workers: Workers = None,
    cpus_per_worker: CpusPerWorker = None,
    gpus_per_worker: GpusPerWorker = None,
    ray_address: RayAddress = None,
    only: Annotated[
        str | None,
        typer.Option(help="comma-separated sample ids or task names to run now (the rest waits for a resume)"),
    ] = None,
    stop_after: Annotated[
        float | None,
        typer.Option(metavar="MINUTES", help="start no new sample after this many minutes; re-run to resume"),
    ] = None,
) -> None:
    """Run a suite for each mode into a resumable run folder."""
    from chatqa.evaluation.report import score_table
    from chatqa.evaluation.runner import run_suite
    from chatqa.evaluation.suites import load_suite, parse_depths, parse_lengths
    from chatqa.progress import interactive

    loaded = load_suite(suite)  # fail on a bad name or option before loading any model
    length_list = parse_lengths(lengths) if lengths else None
    depth_list = parse_depths(depths) if depths else None
    for name, value in (("n", n), ("limit", limit), ("top-k", top_k)):
        if value is not None and value < 1:
            raise InputError(f"--{name} must be at least 1")
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    qa, runner = None, None
    if executor != "local" or (workers, cpus_per_worker, gpus_per_worker) != (None, None, None):
        from chatqa.cli._executor import make
        from chatqa.pipeline import ChatQA

        qa = ChatQA.from_profile(profile)
        runner = make(executor, qa, workers, cpus_per_worker, gpus_per_worker, ray_address,
                      load_embedder=set(mode_list) != {"long"})  # fmt: skip
    try:
        result = run_suite(
            loaded, profile, modes=mode_list, lengths=length_list, depths=depth_list, n=n, limit=limit, seed=seed,
            data_dir=data_dir, out=out, top_k=top_k, truncate=truncate, progress=interactive() and not json_out,
            command=shlex.join(["chatqa", *sys.argv[1:]]), variant=variant, judge=judge, qa=qa, executor=runner,
            only=[x.strip() for x in only.split(",") if x.strip()] if only else None,
            stop_after=None if stop_after is None else stop_after * 60,
        )  # fmt: skip
    finally:
        if runner is not None:
            runner.close()
    s = result.summary
    if json_out:
        print(json.dumps({"run_dir": str(result.run_dir), "added": result.added, "skipped": result.skipped, **s}))
        return
    shown = list(dict.fromkeys(g["mode"] for g in s["groups"]))
    print("\n".join(score_table(s["groups"], shown)))
    print(f"\n{result.added} new row(s), {result.skipped} already done; {s['errors']} error(s), "
          f"{s['refused']} LC-impossible; compute {s['compute_seconds']:.1f}s")  # fmt: skip
    print(f"report: {result.run_dir / 'report.md'}")


@evaluate.command()
def score(
    preds: Annotated[str, typer.Option(help="folder of preds_<task>.jsonl files")],
    suite: Annotated[str, typer.Option(help="the suite whose metrics apply")] = "infinitebench",
    json_out: Json = False,
) -> None:
    """Score official prediction files (preds_<task>.jsonl)."""
    from chatqa.evaluation.report import score_predictions

    scores = score_predictions(preds, suite)
    if json_out:
        print(json.dumps(scores))
    else:
        width = max(map(len, scores))
        print("\n".join(f"{task:<{width}}  {value:6.2f}" for task, value in scores.items()))


@evaluate.command()
def report(
    run_dir: Annotated[str, typer.Argument(help="a run folder (holding config.json and rows.jsonl)")],
    json_out: Json = False,
    rescore: Annotated[
        bool,
        typer.Option(
            "--rescore",
            help="score the stored predictions again with the current scorers first "
            "(for scorer fixes; prompt changes need a re-run)",
        ),
    ] = False,
) -> None:
    """Rebuild summary, plots and report.md of a run folder."""
    from chatqa.evaluation import report as reporting

    folder = Path(run_dir)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a run folder (no config.json)")
    changed = reporting.rescore(folder) if rescore else None
    summary = reporting.write_report(folder)
    if changed is not None:
        summary["rescored_changed"] = changed
    if json_out:
        print(json.dumps({"run_dir": str(folder), **summary}))
    else:
        print(f"{summary['rows']} rows -> {folder / 'report.md'}, summary.json, summary.csv, score_vs_*.png")


@evaluate.command()
def compare(
    run_a: Annotated[str, typer.Argument(help="run folder A")],
    run_b: Annotated[str, typer.Argument(help="run folder B (same suite, e.g. another profile)")],
    mode: Annotated[str, typer.Option(help="the mode whose rows are paired")] = "rag",
    json_out: Json = False,
) -> None:
    """Pair two run folders of one suite on the samples both scored: A - B with 95% intervals, and costs."""
    from chatqa.evaluation.report import compare_runs

    c = compare_runs(Path(run_a), Path(run_b), mode)
    if json_out:
        print(json.dumps(c))
        return

    def side(s: dict) -> str:
        ci = f" [{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]" if s["ci95"] else ""
        return f"{s['score']:.1f}{ci}"

    print(f"{c['suite']}, mode {mode}: A = {c['a']['profile']} ({c['a']['generator']}), "
          f"B = {c['b']['profile']} ({c['b']['generator']})")  # fmt: skip
    print("| subset | n pairs | A | B | A - B [95% CI] | A better / worse |")
    print("|---|---:|---|---|---|---|")
    for name, got in [("all", c["all"]), ("answerable", c["answerable"]), *c["tasks"].items()]:
        if got is not None:
            d = got["paired"]
            print(f"| {name} | {d['n']} | {side(got['a'])} | {side(got['b'])} | {d['diff']:+.1f} "
                  f"[{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}] | {d['wins']} / {d['losses']} |")  # fmt: skip
    for k in ("a", "b"):
        x = c[k]
        print(f"{k.upper()}: median {x['median_seconds']} s / mean {x['mean_seconds']} s per answer; "
              f"model load {x['load_seconds']} s (median over invocations)")  # fmt: skip
