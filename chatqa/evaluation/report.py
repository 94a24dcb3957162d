"""Summary, CSV, plots and a one-page report, always rebuilt from ``rows.jsonl`` (the only source of truth).

Rebuilding from rows means an interrupted, resumed or hand-edited run reports exactly what its rows say.
LC-impossible rows are n/a (not 0): a window limit is not a wrong answer; errors count as 0, visibly.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from chatqa.errors import InputError
from chatqa.evaluation.rundir import length_tag, read_rows
from chatqa.evaluation.samples import iter_jsonl

CSV_FIELDS = ("task", "length", "mode", "n", "score", "refused", "errors", "reused", "input_tokens",
              "seconds_total", "seconds_prefill", "routes_long", "routes_rag", "compute_seconds")  # fmt: skip

MARKERS = ("o", "s", "^", "D")


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(rows: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """One group per (task, length, mode): score in percent over rows that could run (errors count as 0)."""
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["length"] or 0, r["mode"]), []).append(r)
    order = {m: i for i, m in enumerate(modes)}
    groups = []
    for (task, length, mode), rs in sorted(cells.items(), key=lambda c: (c[0][0], c[0][1], order.get(c[0][2], 99))):
        ran = [r for r in rs if r["route"] != "refused"]
        score = _mean([100 * (r["score"] or 0.0) for r in ran])
        groups.append({
            "task": task, "length": length, "mode": mode, "n": len(rs),
            "score": None if score is None else round(score, 2), "refused": len(rs) - len(ran),
            "errors": sum(1 for r in ran if r["error"]), "reused": sum(1 for r in rs if r.get("reused")),
            "input_tokens": _mean([r["input_tokens"] for r in ran]),
            "seconds_total": _mean([r["seconds"]["total"] for r in ran]),
            "seconds_prefill": _mean([r["seconds"]["prefill"] for r in ran]),
            "routes": {route: sum(1 for r in ran if r["route"] == route) for route in ("long", "rag")},
            "compute_seconds": round(sum(r.get("compute_seconds", 0.0) for r in rs), 3),
        })  # fmt: skip
    return groups


def write_report(run: Path) -> dict[str, Any]:
    """Rebuild summary.json, summary.csv, the two plots and report.md of a run folder; returns the summary."""
    run = Path(run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    rows = read_rows(run / "rows.jsonl", repair=False)
    modes = list(config["options"]["modes"])
    groups = summarize(rows, modes)
    summary = {
        "suite": config["suite"]["name"], "profile": config["profile"]["name"], "command": config["command"],
        "rows": len(rows), "errors": sum(g["errors"] for g in groups), "refused": sum(g["refused"] for g in groups),
        "compute_seconds": round(sum(r.get("compute_seconds", 0.0) for r in rows), 3),
        "load_seconds": round(sum(i.get("load_seconds", 0.0) for i in config.get("invocations", [])), 3),
        "groups": groups,
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with (run / "summary.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        for g in groups:
            flat = {**g, "routes_long": g["routes"]["long"], "routes_rag": g["routes"]["rag"]}
            writer.writerow({k: flat[k] for k in CSV_FIELDS})
    _plots(run, groups, modes)
    (run / "report.md").write_text(_markdown(config, summary, rows, modes), encoding="utf-8")
    return summary


def _by_mode_length(groups: list[dict[str, Any]], key: str) -> dict[tuple[str, int], float]:
    """Macro average over tasks of ``key`` per (mode, length), skipping cells where LC was impossible."""
    acc: dict[tuple[str, int], list[float]] = {}
    for g in groups:
        if g["score"] is not None and g[key] is not None:
            acc.setdefault((g["mode"], g["length"]), []).append(g[key])
    return {k: sum(v) / len(v) for k, v in acc.items()}


def _legend(ax: Any, title: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title=title, fontsize=8)
    else:  # every cell LC-impossible: say so rather than show an empty frame
        ax.text(0.5, 0.5, "no scored points (LC impossible)", ha="center", transform=ax.transAxes)


def _plots(run: Path, groups: list[dict[str, Any]], modes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score, cost = _by_mode_length(groups, "score"), _by_mode_length(groups, "seconds_total")
    n_tasks = len({g["task"] for g in groups})
    note = f" (mean over {n_tasks} tasks)" if n_tasks > 1 else ""
    lengths = sorted({g["length"] for g in groups if g["length"]})
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, mode in enumerate(modes):  # shrinking markers keep overlapping modes (auto = long) visible
        pts = sorted((L, s) for (m, L), s in score.items() if m == mode and L)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[i % 4], ms=11 - 2 * i, label=mode)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths or [1], [length_tag(L) for L in lengths] or [""])
    ax.minorticks_off()
    ax.set(xlabel="context length (tokens, log2)", ylabel="score", ylim=(-5, 105), title=f"Score vs length{note}")
    _legend(ax, "mode (LC-impossible points absent)")
    fig.tight_layout()
    fig.savefig(run / "score_vs_length.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, mode in enumerate(modes):
        pts = [(cost[k], s, k[1]) for k, s in score.items() if k[0] == mode and k in cost]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[i % 4], s=(11 - 2 * i) ** 2, label=mode)
            for x, y, L in pts:
                ax.annotate(length_tag(L) if L else "", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="mean seconds per question (cost)", ylabel="score", ylim=(-5, 105), title=f"Score vs cost{note}")
    _legend(ax, "mode (label: length)")
    fig.tight_layout()
    fig.savefig(run / "score_vs_cost.png", dpi=100)
    plt.close(fig)


def _cell(g: dict[str, Any] | None) -> str:
    if g is None:
        return ""
    if g["score"] is None:
        return "n/a (LC impossible)"
    marks = f", {g['errors']} err" if g["errors"] else ""
    marks += f", {g['refused']} n/a" if g["refused"] else ""
    return f"{g['score']:.1f} ({g['seconds_total']:.2f}s{marks})"


def score_table(groups: list[dict[str, Any]], modes: list[str]) -> list[str]:
    """The at-a-glance table: one row per task and length, one column per mode."""
    lines = ["| task | length | " + " | ".join(modes) + " |", "|---|---:|" + "---:|" * len(modes)]
    cells = {(g["task"], g["length"], g["mode"]): g for g in groups}
    for task, length in dict.fromkeys((g["task"], g["length"]) for g in groups):
        row = [_cell(cells.get((task, length, m))) for m in modes]
        lines.append(f"| {task} | {length_tag(length) if length else '-'} | " + " | ".join(row) + " |")
    return lines


def _markdown(config: dict[str, Any], summary: dict[str, Any], rows: list[dict[str, Any]], modes: list[str]) -> str:
    p, opts = config["profile"], config["options"]
    groups = summary["groups"]
    lines = [
        f"# {summary['suite']}: RAG vs long context, profile `{p['name']}`", "",
        f"Generator `{p['generator']['model']}` (window {p['generator']['context_window']:,}), retriever "
        f"`{p['retriever']['model']}`, chunks of {p['chunking']['chunk_tokens']} tokens, top-{opts['top_k']}, "
        f"truncation {opts['truncate'] or 'none'}; chatqa {config['chatqa_version']} on "
        f"{config['machine']['platform']} ({config['machine']['cpu_count']} CPUs).", "",
        f"Command: `{summary['command']}`", "",
        "## Score (mean cost in seconds per question)", "", *score_table(groups, modes),
    ]  # fmt: skip
    lines += [
        "", "Scores are percentages (official metric). *n/a*: long context impossible, the document does not fit "
        "the window; those rows are left out of the score, not counted as 0. Errors count as 0.", "",
        "## Details", "", "| task | length | mode | n | score | refused | errors | reused | input tokens | "
        "s total | s prefill | routes long/rag |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for g in groups:
        fmt = [f"{g[k]:.2f}" if g[k] is not None else "-" for k in ("seconds_total", "seconds_prefill")]
        tokens = f"{g['input_tokens']:,.0f}" if g["input_tokens"] is not None else "-"
        lines.append(f"| {g['task']} | {length_tag(g['length']) if g['length'] else '-'} | {g['mode']} | {g['n']} | "
                     f"{'n/a' if g['score'] is None else g['score']} | {g['refused']} | {g['errors']} | {g['reused']} "
                     f"| {tokens} | {fmt[0]} | {fmt[1]} | {g['routes']['long']}/{g['routes']['rag']} |")  # fmt: skip
    reused = sum(g["reused"] for g in groups)
    lines += [
        "", "## Cost and compute", "",
        f"Cost columns are what one answer costs (model loading excluded). {reused} answer(s) reused an identical "
        "generation made earlier in the run (auto/self-route routing the same way as long/rag): their cost is a "
        "copy of that generation's cost, while the compute time below counts only what this run really spent.",
        "", f"Total compute time: {summary['compute_seconds'] + summary['load_seconds']:.1f}s "
        f"({summary['compute_seconds']:.1f}s answering {summary['rows']} rows, {summary['load_seconds']:.1f}s "
        f"loading models, {len(config.get('invocations', []))} invocation(s)); {summary['refused']} LC-impossible, "
        f"{summary['errors']} error(s).", "",
        "![score vs length](score_vs_length.png)", "", "![score vs cost](score_vs_cost.png)", "",
    ]  # fmt: skip
    errors = [r for r in rows if r["error"] and r["route"] != "refused"]
    if errors:
        lines += ["## Errors", ""] + [f"- `{r['id']}` {r['mode']}: {r['error']}" for r in errors[:20]] + [""]
    return "\n".join(lines)


def score_predictions(preds: str | Path, suite: str = "infinitebench") -> dict[str, float]:
    """Score official prediction files (``preds_<task>.jsonl``: ``prediction``, ``ground_truth``) with the
    suite's metrics, in percent: reproducing published numbers is what makes our own scores credible."""
    from chatqa.evaluation.metrics import score
    from chatqa.evaluation.suites import load_suite, metric_for

    spec = load_suite(suite)
    if spec.source != "infinitebench":
        raise InputError(f"eval score reads InfiniteBench prediction files; suite {spec.name} has none")
    folder = Path(preds).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of preds_<task>.jsonl files")
    out: dict[str, float] = {}
    for task in spec.tasks or []:
        path = folder / f"preds_{task}.jsonl"
        if path.is_file():
            try:
                got = [score(metric_for(spec, task), r["prediction"], r["ground_truth"]) for r in iter_jsonl(path)]
            except (KeyError, ValueError) as exc:
                raise InputError(f"{path}: not an InfiniteBench predictions file ({exc})") from None
            out[task] = round(100 * sum(got) / max(1, len(got)), 2)
    if not out:
        raise InputError(f"{folder}: no preds_<task>.jsonl file for any of {', '.join(spec.tasks or [])}")
    return out
