"""Where LongEval line-retrieval answers go wrong: another line's value (the wrong line) or a number not in the record.

Why: a 0-30% score alone cannot tell "found the record, missed the line" from "made a number up"; the answer to
that says whether a better router or a better model is what is missing (eval/results/README.md quotes it).
Run: ``python eval/longeval_wrong_lines.py eval/results/longeval-lines/<run>/ [--data ../shared/data/longeval]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"line ([\w-]+): REGISTER_CONTENT is <(\d+)>")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a longeval-lines run folder (holds rows.jsonl)")
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/longeval")
    args = p.parse_args(argv)
    records = {}  # row id "longeval-lines-<lines>-<index>" -> the record's line values in order, and the gold
    for f in sorted((args.data / "lines").glob("*_lines.jsonl")):
        for i, text in enumerate(f.read_text(encoding="utf-8").splitlines()):
            r = json.loads(text)
            records[f"longeval-lines-{r['num_lines']}-{i}"] = (
                [v for _, v in LINE.findall(r["prompt"])],
                str(r["expected_number"]),
            )
    stats: dict[str, dict[str, list[int] | int]] = defaultdict(lambda: {"wrong": 0, "other_line": 0, "distances": []})
    for text in (args.run / "rows.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(text)
        if row.get("score") or row["id"] not in records:
            continue
        values, gold = records[row["id"]]
        numbers = re.findall(r"\d+", row.get("prediction") or "")
        s = stats[row["mode"]]
        s["wrong"] += 1  # type: ignore[operator]
        if numbers and numbers[-1] in values:  # LongEval scores the last integer of the answer
            s["other_line"] += 1  # type: ignore[operator]
            s["distances"].append(abs(values.index(numbers[-1]) - values.index(gold)))  # type: ignore[union-attr]
    print("| mode | wrong | another line's value | median distance (lines) |\n| --- | ---: | ---: | ---: |")
    for mode, s in stats.items():
        dist = s["distances"]
        print(f"| {mode} | {s['wrong']} | {s['other_line']} | {statistics.median(dist) if dist else '-'} |")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
