"""Summary, CSV, plots and a one-page report, always rebuilt from ``rows.jsonl`` (the only source of truth).

Rebuilding from rows means an interrupted, resumed or hand-edited run reports exactly what its rows say.
LC-impossible rows are n/a (not 0): a window limit is not a wrong answer; errors count as 0, visibly.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from chatqa.errors import InputError
from chatqa.evaluation.rundir import length_tag, read_rows, rewrite_rows
from chatqa.evaluation.stats import paired_difference, score_interval
from chatqa.files import write_atomic

CSV_FIELDS = ("task", "length", "mode", "n", "n_scored", "score", "ci95_low", "ci95_high", "refused", "errors",
              "excluded", "reused", "input_tokens", "seconds_total", "seconds_prefill", "routes_long", "routes_rag",
              "compute_seconds", "judge_score", "unanswerable_acc", "answerable_acc", "gold_in_context",
              "score_gold_in", "score_gold_out")  # fmt: skip

MARKERS = ("o", "s", "^", "D")
EXTRA_COLUMNS = (
    ("judge_score", "judge"),
    ("unanswerable_acc", "unanswerable acc"),
    ("answerable_acc", "answerable acc"),
    ("gold_in_context", "gold in context %"),
    ("score_gold_in", "score if in"),
    ("score_gold_out", "score if not"),
)
SINGLE_ROUTES = ("rag", "long")
# Metrics that are a lower bound of the official one (LongEval topics: containment vs LongChat's LLM judge).
LOWER_BOUND = {"longeval-topics": "normalised containment, a lower bound of LongChat's GPT-3.5 judge"}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def dedupe(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """One row per (task, sample, mode), the first written: two runs into one folder (before run folders
    were locked) wrote every row twice, and counting both would double n and narrow every interval."""
    seen: set[tuple[Any, Any, Any]] = set()
    kept = []
    for r in rows:
        key = (r.get("task"), r.get("id"), r.get("mode"))
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept, len(rows) - len(kept)


def _scored(r: dict[str, Any]) -> bool:
    """Counts toward the score: ran (not LC-impossible) and not left out by the official scorer."""
    return r["route"] != "refused" and not r.get("excluded")


def _value(r: dict[str, Any]) -> float:
    return 100 * (r["score"] or 0.0)  # errors count as 0, visibly (the errors column)


def _rate(flags: list[bool]) -> float | None:
    return round(100 * sum(flags) / len(flags), 2) if flags else None


def summarize(rows: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """One group per (task, length, mode): score in percent over rows that could run (errors count as 0),
    with n, a 95% bootstrap interval and the refused/error/excluded counts."""
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["task"], r["length"] or 0, r["mode"]), []).append(r)
    order = {m: i for i, m in enumerate(modes)}
    groups = []
    for (task, length, mode), rs in sorted(cells.items(), key=lambda c: (c[0][0], c[0][1], order.get(c[0][2], 99))):
        ran = [r for r in rs if r["route"] != "refused"]
        values = [_value(r) for r in rs if _scored(r)]
        score, ci = _mean(values), score_interval(values)
        judged = [100 * r["judge_score"] for r in ran if r.get("judge_score") is not None]
        unans = [r for r in ran if r.get("gold_unanswerable") is True]
        ans = [r for r in ran if r.get("gold_unanswerable") is False and r.get("answerable_listed") is not False]
        groups.append({
            "task": task, "length": length, "mode": mode, "n": len(rs), "n_scored": len(values),
            "score": None if score is None else round(score, 2),
            "ci95": None if ci is None else [round(ci[0], 2), round(ci[1], 2)], "refused": len(rs) - len(ran),
            "errors": sum(1 for r in ran if r["error"]), "excluded": sum(1 for r in ran if r.get("excluded")),
            "reused": sum(1 for r in rs if r.get("reused")),
            "input_tokens": _mean([r["input_tokens"] for r in ran]),
            "seconds_total": _mean([r["seconds"]["total"] for r in ran]),
            "seconds_prefill": _mean([r["seconds"]["prefill"] for r in ran]),
            "routes": {route: sum(1 for r in ran if r["route"] == route) for route in ("long", "rag")},
            "compute_seconds": round(sum(r.get("compute_seconds", 0.0) for r in rs), 3),
            "judge_score": _mean(judged), "unanswerable_acc": _rate([bool(r.get("refusal")) for r in unans]),
            "answerable_acc": _rate([not r.get("refusal") for r in ans]), **context_split(rs),
        })  # fmt: skip
    return groups


def _context_checked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scored rows whose RAG context was checked for an accepted answer."""
    return [r for r in rows if r.get("gold_in_context") is not None and _scored(r)]


def context_split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the RAG context held an accepted answer (rows with ``gold_in_context``), and the score when it
    did and when it did not: a retrieval miss caps the reader, a reading miss is the model's. ``None`` where no
    row was checked (long context, map-reduce, metrics other than containment)."""
    checked = _context_checked(rows)
    inside = [_value(r) for r in checked if r["gold_in_context"]]
    outside = [_value(r) for r in checked if not r["gold_in_context"]]
    return {"n_context_checked": len(checked), "gold_in_context": _rate([bool(r["gold_in_context"]) for r in checked]),
            "score_gold_in": _mean(inside), "score_gold_out": _mean(outside)}  # fmt: skip


def context_by_mode(rows: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """:func:`context_split` per mode over every task, with the in-context rate's 95% interval: the retrieval
    ceiling of the whole set in one line per mode."""
    out = []
    for mode in modes:
        mode_rows = [r for r in rows if r["mode"] == mode]
        split = context_split(mode_rows)
        if split["n_context_checked"]:
            ci = score_interval([100.0 * bool(r["gold_in_context"]) for r in _context_checked(mode_rows)])
            out.append({"mode": mode, **split, "gold_in_context_ci95": [round(ci[0], 2), round(ci[1], 2)] if ci
                        else None})  # fmt: skip
    return out


def _per_sample(rows: list[dict[str, Any]], task: str, mode: str, length: int | None) -> dict[str, float]:
    return {str(r["id"]): _value(r) for r in rows if r["task"] == task and r["mode"] == mode and _scored(r)
            and (length is None or (r["length"] or 0) == length)}  # fmt: skip


def compare(rows: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """Paired mode-vs-mode differences per task (all lengths pooled) and per (task, length): rag vs long,
    and each other mode (auto, self-route) vs the best single route on the samples where all of them ran."""
    out = []
    keys = sorted({(r["task"], r["length"] or 0) for r in rows})
    for task in sorted({t for t, _ in keys}):
        for length in [None, *sorted(L for t, L in keys if t == task)]:
            per = {m: _per_sample(rows, task, m, length) for m in modes}
            pairs = [("rag", "long")] if {"rag", "long"} <= set(modes) else []
            for other in (m for m in modes if m not in SINGLE_ROUTES):
                singles = [m for m in SINGLE_ROUTES if m in modes]
                common = set(per[other]).intersection(*(per[m] for m in singles)) if singles else set()
                if common:
                    best = max(singles, key=lambda m: sum(per[m][k] for k in common))
                    pairs.append((other, best))
            for a, b in pairs:
                if a == "rag" and b == "long":
                    diff = paired_difference(per[a], per[b])
                else:  # vs the best single route, on the samples where every single route ran
                    singles = [m for m in SINGLE_ROUTES if m in modes]
                    common = set(per[a]).intersection(*(per[m] for m in singles))
                    diff = paired_difference({k: per[a][k] for k in common}, {k: per[b][k] for k in common})
                if diff is not None:
                    out.append({"task": task, "length": length, "a": a, "b": b, **diff})
    return out


def _side(values: dict[Any, float]) -> dict[str, Any]:
    ci = score_interval(list(values.values()))
    return {"n": len(values), "score": _mean(list(values.values())),
            "ci95": None if ci is None else [round(ci[0], 2), round(ci[1], 2)]}  # fmt: skip


def compare_runs(a: Path, b: Path, mode: str) -> dict[str, Any]:
    """Two run folders of one suite (two profiles, say), paired on the samples both scored in ``mode``: each
    side's score with its 95% interval and the paired difference A - B, over all samples, over those with an
    accepted answer (question sets: the not-in-book ones left out) and per task; plus seconds per answer and
    model loading. Pairing is what makes a 100-question comparison of two models readable at all."""
    runs = {}
    for name, run in (("a", Path(a)), ("b", Path(b))):
        if not (run / "config.json").is_file():
            raise InputError(f"{run}: not a run folder (no config.json)")
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        rows = [r for r in dedupe(read_rows(run / "rows.jsonl", repair=False))[0] if r["mode"] == mode]
        if not rows:
            raise InputError(f"{run}: no {mode} rows")
        runs[name] = (config, rows)
    suites = {runs[k][0]["suite"]["name"] for k in runs}
    if len(suites) != 1:
        raise InputError(f"the runs are of different suites ({', '.join(sorted(suites))}): nothing to pair")

    def values(rows: list[dict[str, Any]], keep: Any = None) -> dict[tuple[str, str], float]:
        return {(r["task"], str(r["id"])): _value(r) for r in rows if _scored(r) and (keep is None or keep(r))}

    def pair(keep: Any = None) -> dict[str, Any] | None:
        va, vb = values(runs["a"][1], keep), values(runs["b"][1], keep)
        common = set(va) & set(vb)
        if not common:
            return None
        diff = paired_difference({f"{t}/{i}": va[t, i] for t, i in common}, {f"{t}/{i}": vb[t, i] for t, i in common})
        return {"a": _side({k: va[k] for k in common}), "b": _side({k: vb[k] for k in common}), "paired": diff}

    def cost(config: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        secs = sorted(r["seconds"]["total"] for r in rows if r["route"] != "refused")
        loads = [i["load_seconds"] for i in config.get("invocations", []) if i.get("load_seconds") is not None]
        return {"profile": config["profile"]["name"], "generator": config["profile"]["generator"]["model"],
                "median_seconds": secs[len(secs) // 2] if secs else None, "mean_seconds": _mean(secs),
                "load_seconds": sorted(loads)[len(loads) // 2] if loads else None}  # fmt: skip

    tasks = sorted({r["task"] for k in runs for r in runs[k][1]})
    return {"suite": suites.pop(), "mode": mode, "a": cost(*runs["a"]), "b": cost(*runs["b"]), "all": pair(),
            "answerable": pair(lambda r: bool(r.get("gold")) if isinstance(r.get("gold"), list) else True),
            "tasks": {t: pair(lambda r, t=t: r["task"] == t) for t in tasks}}  # fmt: skip


def rescore(run: Path) -> int:
    """Score a run folder's stored predictions again with the current scorers and its suite's metric (the
    predictions, and so the prompts that produced them, are unchanged); returns how many scores changed.

    For fixes in scoring only: a fix that changes prompts needs a re-run, which the run's recorded template set
    enforces. rows.jsonl is rewritten atomically; each changed row keeps its old score as ``score_before``."""
    from chatqa.evaluation.metrics import score
    from chatqa.evaluation.rundir import lock
    from chatqa.evaluation.suites import Suite

    run = Path(run)
    with lock(run):  # no `eval run` may append while the rows are rewritten
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        suite = Suite(**{k: v for k, v in config["suite"].items() if k in Suite.__dataclass_fields__})
        rows = read_rows(run / "rows.jsonl", repair=False)
        changed = 0
        for r in rows:
            if r.get("prediction") is None or r["route"] == "refused" or r.get("error"):
                continue
            kw = {**suite.metric_kwargs, **{k: r[k] for k in ("formula", "question") if k in r}}
            got = score(suite.metric.format(task=r["task"]), r["prediction"], r["gold"], **kw)
            new = None if got is None else float(got)
            if new != r["score"]:
                r.setdefault("score_before", r["score"])
                r["score"], changed = new, changed + 1
        rewrite_rows(run / "rows.jsonl", rows)
    return changed


def write_report(run: Path) -> dict[str, Any]:
    """Rebuild summary.json, summary.csv, the two plots and report.md of a run folder; returns the summary."""
    run = Path(run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    rows, duplicates = dedupe(read_rows(run / "rows.jsonl", repair=False))
    modes = list(config["options"]["modes"])
    groups = summarize(rows, modes)
    summary = {
        "suite": config["suite"]["name"], "profile": config["profile"]["name"], "command": config["command"],
        "template_set": config.get("template_set"), "rows": len(rows), "duplicates_dropped": duplicates,
        "errors": sum(g["errors"] for g in groups), "refused": sum(g["refused"] for g in groups),
        "compute_seconds": round(sum(r.get("compute_seconds", 0.0) for r in rows), 3),
        "load_seconds": round(sum(i.get("load_seconds", 0.0) for i in config.get("invocations", [])), 3),
        "groups": groups, "comparisons": compare(rows, modes), "context": context_by_mode(rows, modes),
    }  # fmt: skip
    write_atomic(run / "summary.json", json.dumps(summary, indent=2) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, CSV_FIELDS)
    writer.writeheader()
    for g in groups:
        ci = g["ci95"] or [None, None]
        flat = {**g, "routes_long": g["routes"]["long"], "routes_rag": g["routes"]["rag"], "ci95_low": ci[0],
                "ci95_high": ci[1]}  # fmt: skip
        writer.writerow({k: flat[k] for k in CSV_FIELDS})
    write_atomic(run / "summary.csv", table.getvalue())
    _plots(run, groups, modes)
    write_atomic(run / "report.md", _markdown(config, summary, rows, modes))
    return summary


def _by_mode_length(groups: list[dict[str, Any]], key: str) -> dict[tuple[str, int], float]:
    """Macro average over tasks of ``key`` per (mode, length), over the tasks where *every* mode has a score at
    that length: averaging rag over four tasks and long over the two where it fit would compare different
    things. A length where LC fit no task keeps the other modes' points (long has none there)."""
    ran: dict[tuple[str, int], set[str]] = {}
    for g in groups:
        if g["score"] is not None:
            ran.setdefault((g["task"], g["length"]), set()).add(g["mode"])
    acc: dict[tuple[str, int], list[float]] = {}
    for length in {g["length"] for g in groups}:
        cells = {task: m for (task, at), m in ran.items() if at == length}
        present = set().union(*cells.values())
        full = [task for task, m in cells.items() if m == present]
        for g in groups:
            if g["length"] == length and g["task"] in full and g["score"] is not None and g[key] is not None:
                acc.setdefault((g["mode"], length), []).append(g[key])
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
    ci = f" [{g['ci95'][0]:.0f}, {g['ci95'][1]:.0f}]" if g.get("ci95") else ""
    return f"{g['score']:.1f}{ci} (n={g.get('n_scored', g['n'])}, {g['seconds_total']:.2f}s{marks})"


def _comparison_lines(comparisons: list[dict[str, Any]]) -> list[str]:
    """The paired comparisons, all lengths pooled first; each says whether it is inside the noise."""
    if not comparisons:
        return []
    lines = ["## Paired comparisons (same samples, A minus B, points)", "",
             "| task | length | A vs B | n pairs | difference [95% CI] | A better / worse | reading |",
             "|---|---:|---|---:|---|---|---|"]  # fmt: skip
    for c in comparisons:
        length = "all" if c["length"] is None else (length_tag(c["length"]) if c["length"] else "-")
        reading = "inside the noise" if c["inside_noise"] else (f"{c['a']} better" if c["diff"] > 0 else
                                                                 f"{c['b']} better")  # fmt: skip
        lines.append(
            f"| {c['task']} | {length} | {c['a']} vs {c['b']} | {c['n']} | {c['diff']:+.1f} "
            f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] | {c['wins']} / {c['losses']} | {reading} |"
        )
    return [
        *lines,
        "",
        "*best single route*: of rag and long, the one with the higher total on the samples "
        "where every mode ran; a difference whose interval holds 0 is inside the noise.",
        "",
    ]


def _context_lines(context: list[dict[str, Any]]) -> list[str]:
    """Where RAG's misses come from: the answer was not in what the reader saw, or the reader missed it."""
    if not context:
        return []
    lines = ["## Retrieval vs reading (RAG rows whose context was checked for an accepted answer)", "",
             "| mode | rows checked | gold in context [95% CI] | score if in context | score if not |",
             "|---|---:|---|---:|---:|"]  # fmt: skip
    for c in context:
        low, high = c["gold_in_context_ci95"] or (None, None)
        ci = f" [{low:.1f}, {high:.1f}]" if low is not None else ""
        cell = [f"{c[k]:.1f}" if c[k] is not None else "-" for k in ("score_gold_in", "score_gold_out")]
        lines.append(f"| {c['mode']} | {c['n_context_checked']} | {c['gold_in_context']:.1f}%{ci} | {cell[0]} | "
                     f"{cell[1]} |")  # fmt: skip
    return [*lines, "", "*gold in context*: an accepted answer occurs (the suite's containment rule) in the chunks "
            "the reader was given; it bounds what a perfect reader could score with this retrieval.", ""]  # fmt: skip


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
        f"Prompt set: `{summary.get('template_set') or 'not recorded'}`.", "",
        "## Score [95% interval] (n scored, mean cost in seconds per question)", "",
        *score_table(groups, modes),
    ]  # fmt: skip
    lines += [
        "", "Scores are percentages (official metric). *n/a*: long context impossible, the document does not fit "
        "the window; those rows are left out of the score, not counted as 0. Errors count as 0. Intervals are "
        "95%: Wilson score intervals where every score is 0 or 100, percentile bootstraps of the mean otherwise; "
        "with n of 10, one sample moves a score by 10 points.",
        *[f"\n`{t}` is scored by {why}." for t, why in LOWER_BOUND.items() if any(g["task"] == t for g in groups)],
        "",
        *_comparison_lines(summary.get("comparisons", [])),
        *_context_lines(summary.get("context", [])),
        "## Details", "", "| task | length | mode | n | score | 95% CI | refused | errors | excluded | reused | "
        "input tokens | s total | s prefill | routes long/rag | extra |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]  # fmt: skip
    for g in groups:
        fmt = [f"{g[k]:.2f}" if g[k] is not None else "-" for k in ("seconds_total", "seconds_prefill")]
        tokens = f"{g['input_tokens']:,.0f}" if g["input_tokens"] is not None else "-"
        ci = f"{g['ci95'][0]:.1f}-{g['ci95'][1]:.1f}" if g.get("ci95") else "-"
        extra = "; ".join(f"{label} {g[k]:.1f}" for k, label in EXTRA_COLUMNS if g.get(k) is not None)
        lines.append(f"| {g['task']} | {length_tag(g['length']) if g['length'] else '-'} | {g['mode']} | {g['n']} | "
                     f"{'n/a' if g['score'] is None else g['score']} | {ci} | {g['refused']} | {g['errors']} | "
                     f"{g.get('excluded', 0)} | {g['reused']} | {tokens} | {fmt[0]} | {fmt[1]} | "
                     f"{g['routes']['long']}/{g['routes']['rag']} | {extra or '-'} |")  # fmt: skip
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
    suite's metrics, in percent: reproducing published numbers is what makes our own scores credible.

    A malformed row (not a JSON object, a missing or non-string ``prediction``) is a one-line error naming the
    file and line; a file with no rows says so instead of scoring 0.00."""
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
            got = [_score_row(score, metric_for(spec, task), path, no, row) for no, row in _pred_rows(path)]
            if not got:
                raise InputError(f"{path}: no rows (an empty predictions file has no score)")
            out[task] = round(100 * sum(got) / len(got), 2)
    if not out:
        raise InputError(f"{folder}: no preds_<task>.jsonl file for any of {', '.join(spec.tasks or [])}")
    return out


def _pred_rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line; a line that is not JSON is a one-line error."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for no, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append((no, json.loads(line)))
                except json.JSONDecodeError:
                    raise InputError(f"{path} line {no}: not a JSON row") from None
    return rows


def _score_row(score: Any, metric: str, path: Path, no: int, row: Any) -> float:
    if not isinstance(row, dict):
        raise InputError(f"{path} line {no}: a row must be a JSON object with prediction and ground_truth, "
                         f"got a JSON {type(row).__name__}")  # fmt: skip
    if not isinstance(row.get("prediction"), str) or "ground_truth" not in row:
        if "prediction" not in row or "ground_truth" not in row:
            what = "prediction" if "prediction" not in row else "ground_truth"
            raise InputError(f"{path} line {no}: not an InfiniteBench predictions row ({what} missing)")
        kind = "null" if row["prediction"] is None else type(row["prediction"]).__name__
        raise InputError(f"{path} line {no}: prediction must be a string, got {kind}")
    try:
        return float(score(metric, row["prediction"], row["ground_truth"]) or 0.0)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"{path} line {no}: cannot score this row ({type(exc).__name__}: {exc})") from None
