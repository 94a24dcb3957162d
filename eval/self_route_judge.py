"""Does Self-Route decline what is not in the book? A question-set run's Self-Route rows, summarised.

Why a script: the run's report scores final answers, but a judge's quality is two error rates (not-in-book
questions it let through, answerable ones it declined), each with an interval at n = 10 and 101, and how they
move with the threshold. A judged run records each row's P(yes) and, on a decline, the RAG answer it replaced
(``rag_attempt``), so the RAG answers, and every threshold's outcome on the novels, follow from the rows without
generating again. Not-in-book questions are the rows with no accepted answer (gold ``[]``).

    python eval/self_route_judge.py eval/results/novels-qa/<judged run> [--against <run with rag rows>]

``--against`` pairs the RAG answers' factual scores with another run's ``rag`` rows (same question), and says
how many predictions are identical (the same prompt should give the same greedy answer).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chatqa.evaluation.metrics import score  # noqa: E402
from chatqa.evaluation.question_sets import wilson_interval  # noqa: E402
from chatqa.evaluation.stats import paired_difference  # noqa: E402

METRIC = "qa:contains"


def rows(run: Path, mode: str) -> list[dict[str, Any]]:
    lines = (run / "rows.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, filter(str.strip, lines)) if r["mode"] == mode and not r.get("error")]


def share(hits: int, n: int) -> str:
    lo, hi = wilson_interval(hits, n)
    return f"{hits}/{n} = {100 * hits / max(n, 1):.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def rag_answer(row: dict[str, Any]) -> str:
    """The RAG answer of a judged row: the prediction, unless a decline replaced it (then its recorded try)."""
    return row.get("rag_attempt", row["prediction"])


def verdicts(rows_: list[dict[str, Any]], t: float) -> tuple[int, int, int]:
    """At threshold ``t``, counting a decline as standing: (not-in-book declined, factual correct kept, factual
    declined). The suite's score counts both kinds of question alike, so the first two add up to its hits."""
    declined = [r["judge"]["p_yes"] is not None and r["judge"]["p_yes"] < t for r in rows_]
    absent = sum(d for d, r in zip(declined, rows_, strict=True) if not r["gold"])
    kept = sum(not d and score(METRIC, rag_answer(r), r["gold"]) == 1.0 for d, r in zip(declined, rows_, strict=True)
               if r["gold"])  # fmt: skip
    return absent, kept, sum(d for d, r in zip(declined, rows_, strict=True) if r["gold"])


def other_books(rows_: list[dict[str, Any]]) -> dict[str, Any]:
    """An out-of-sample threshold: for each book, the threshold that scores best on the other books (ties: the
    lowest, fewest declines) applied to this one. With 2 not-in-book questions per book it is noisy, but it is
    not fitted to the questions it is scored on, as any threshold read off the curve is."""
    grid = [round(0.15 + 0.01 * i, 2) for i in range(36)]  # 0.15 .. 0.50
    books = sorted({r["task"] for r in rows_})
    per_book, totals = {}, [0, 0, 0]
    for book in books:
        train = [r for r in rows_ if r["task"] != book]
        best = max(grid, key=lambda t: (sum(verdicts(train, t)[:2]), -t))
        got = verdicts([r for r in rows_ if r["task"] == book], best)
        per_book[book] = {"threshold": best, "not_in_book_declined": got[0], "factual_correct": got[1],
                          "factual_declined": got[2]}  # fmt: skip
        totals = [a + b for a, b in zip(totals, got, strict=True)]
    n_absent, n_factual = sum(not r["gold"] for r in rows_), sum(bool(r["gold"]) for r in rows_)
    return {
        "per_book": per_book,
        "not_in_book_declined": share(totals[0], n_absent),
        "factual_correct": share(totals[1], n_factual),
        "factual_declined": share(totals[2], n_factual),
    }


def summarise(run: Path, against: Path | None, thresholds: list[float]) -> dict[str, Any]:
    got = rows(run, "self-route")
    judged = [r for r in got if r.get("judge")]
    if not judged:
        raise SystemExit(f"{run}: no judged self-route rows (routing.self_route_decline: judge)")
    missing = [r["id"] for r in judged if r["judge"]["p_yes"] is None]
    factual = [r for r in judged if r["gold"]]
    absent = [r for r in judged if not r["gold"]]
    threshold = judged[0]["judge"]["threshold"]
    out: dict[str, Any] = {"run": run.name, "threshold": threshold, "rows": len(judged), "no_verdict": missing}
    seconds = [r["seconds"]["total"] for r in judged]
    judge_s = [r["judge"]["seconds"] for r in judged]
    out["seconds"] = {
        "median": round(statistics.median(seconds), 2),
        "mean": round(statistics.mean(seconds), 2),
        "judge_median": round(statistics.median(judge_s), 2),
        "judge_prompt_tokens_median": statistics.median(r["judge"]["prompt_tokens"] for r in judged),
    }
    out["at_run_threshold"] = {
        "not_in_book_judged_declined": share(sum(r["judge"]["declined"] for r in absent), len(absent)),
        "not_in_book_final_declines": share(sum(r["score"] == 1.0 for r in absent), len(absent)),
        "factual_judged_declined": share(sum(r["judge"]["declined"] for r in factual), len(factual)),
        "factual_correct_final": share(sum(r["score"] == 1.0 for r in factual), len(factual)),
        "factual_rag_answer_correct": share(sum(score(METRIC, rag_answer(r), r["gold"]) == 1.0 for r in factual),
                                            len(factual)),
        "routes": {route: sum(r["route"] == route for r in judged) for route in sorted({r["route"] for r in judged})},
    }  # fmt: skip
    curve = []
    for t in thresholds:  # on the novels a decline stands (the rows on documents that fit LC are counted apart)
        kept = [r for r in factual if not (r["judge"]["p_yes"] is not None and r["judge"]["p_yes"] < t)]
        curve.append({
            "threshold": t,
            "not_in_book_declined": sum(r["judge"]["p_yes"] is not None and r["judge"]["p_yes"] < t for r in absent),
            "factual_declined": len(factual) - len(kept),
            "factual_correct_kept": sum(score(METRIC, rag_answer(r), r["gold"]) == 1.0 for r in kept),
            "correct_lost": sum(score(METRIC, rag_answer(r), r["gold"]) == 1.0 for r in factual if r not in kept),
        })  # fmt: skip
    out["curve"] = curve
    out["threshold_chosen_on_other_books"] = other_books(judged)
    out["p_yes"] = {
        "not_in_book": sorted(round(r["judge"]["p_yes"], 3) for r in absent if r["judge"]["p_yes"] is not None),
        "factual_quartiles": [round(q, 3) for q in statistics.quantiles(
            [r["judge"]["p_yes"] for r in factual if r["judge"]["p_yes"] is not None], n=4)],
    }  # fmt: skip
    if against is not None:
        base = {r["id"]: r for r in rows(against, "rag")}
        mine = {r["id"]: r for r in factual if r["id"] in base}
        ours = {k: 100.0 * (score(METRIC, rag_answer(r), r["gold"]) or 0.0) for k, r in mine.items()}
        theirs = {k: 100.0 * (base[k]["score"] or 0.0) for k in mine}
        final = {k: 100.0 * (r["score"] or 0.0) for k, r in mine.items()}
        same = sum(rag_answer(r) == base[k]["prediction"] for k, r in mine.items())
        out["against"] = {
            "run": against.name,
            "identical_rag_answers": f"{same}/{len(mine)}",
            "rag_answer_minus_rag": paired_difference(ours, theirs),
            "final_minus_rag": paired_difference(final, theirs),
        }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--against", type=Path, help="a run folder with rag rows on the same questions")
    parser.add_argument("--thresholds", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print(json.dumps(summarise(args.run, args.against, thresholds), indent=2))


if __name__ == "__main__":
    main()
