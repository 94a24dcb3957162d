"""``chatqa calibrate``: measure the generator's *effective* context window and write it into the profile.

A claimed window is not a usable one (LongChat's LongEval, RULER): Gemma 270M reads 32K tokens but finds a pass
key reliably only up to about 8K. Calibration runs long-context-only passkey prompts (InfiniteBench templates and
budgets: the open/completion set for ``prompt_format: completion``, else the chat set) over lengths x depths, plus
LongEval line retrieval cases that fit, and applies RULER's rule: the effective window is the largest tested
length L whose accuracy, and that of every shorter tested length, is at least the threshold (0.85). Accuracy at
a length is the mean of its per-task accuracies (RULER averages tasks). ``auto`` routing then sends documents
beyond it to RAG.

Passkey and LongEval can be solved by string matching. A NoLiMa probe (arXiv 2502.05167) cannot: its needle
shares no content word with the question ("Yuki lives next to the Semper Opera" / "Which character has been to
Dresden?"). NoLiMa's rule is relative: a length counts while the model keeps 85% of its own score at a short
(1K) context. Both windows are recorded in the calibration file; the profile gets the stricter one unless
``--rule absolute`` or ``--rule relative`` says otherwise. A model that fails the probe even at 1K has no
relative window (the rule measures decay, not ability), and the absolute one stands.

Cost: prompt tokens dominate. The default run (2k..32k x 3 depths x n=1, about 186K passkey tokens, plus one
LongEval case per file, 3.7K-12.1K Gemma tokens, 48K in all) takes about 13 minutes for Gemma 270M on 2 idle
cores (prefill 511 tok/s at 2K falling to 242 at 32K; the 32K cells alone are about 6.5 minutes). An estimate
from a measured prefill speed is printed first; a loaded machine can take twice as long.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from chatqa.config import Config
from chatqa.errors import ConfigError, InputError
from chatqa.files import write_atomic

RULES = ("stricter", "absolute", "relative")
_SECTION = re.compile(r"generator\s*:\s*(#.*)?$")
_VALUE = re.compile(r"^(\s+effective_window\s*:[ \t]*)([^#\n]*?)([ \t]*(?:#.*)?)$")


def effective_window(accuracy: dict[int, float], threshold: float) -> int | None:
    """RULER's rule: the largest length L with accuracy >= threshold at L and at every shorter tested length.

    0 when even the shortest tested length fails: a measured "trust no length" (``auto`` then sends every
    local question to RAG), which a failed calibration must not leave as the nominal window. None: nothing
    was measured."""
    best = 0 if accuracy else None
    for length in sorted(accuracy):
        if accuracy[length] < threshold:
            break
        best = length
    return best


def write_effective_window(path: Path, value: int) -> None:
    """Set ``generator.effective_window`` by editing that one line, so comments and layout survive."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _SECTION.match(line.rstrip("\n"))), None)
    if start is None:
        lines += [*([] if not lines or lines[-1].endswith("\n") else ["\n"]), "generator:\n"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), len(lines))
    keys = [i for i in range(start + 1, end) if re.match(r"\s+[^\s#]", lines[i])]
    indent = re.match(r"\s*", lines[keys[0]]).group() if keys else "  "
    hit = [i for i in keys if lines[i].startswith(indent + "effective_window") and _VALUE.match(lines[i].rstrip("\n"))]
    if hit:
        m = _VALUE.match(lines[hit[0]].rstrip("\n"))
        lines[hit[0]] = f"{m.group(1)}{value}{m.group(3)}\n"
    else:
        lines.insert(keys[-1] + 1 if keys else start + 1, f"{indent}effective_window: {value}\n")
    text = "".join(lines)
    if (yaml.safe_load(text) or {}).get("generator", {}).get("effective_window") != value:
        raise ConfigError(f"could not write effective_window into {path}: edit it by hand ({value})")
    write_atomic(path, text)


def relative_window(
    nolima: dict[int, float], base: float | None, ratio: float = 0.85, base_length: int = 1024
) -> int | None:
    """NoLiMa's rule: the largest length whose probe score, and that of every shorter one, is at least ``ratio``
    of the model's own short-context (base) score; the base length itself passes by definition. None when
    there is no base to be relative to (the model fails the probe even when it is short)."""
    if not base or not nolima:
        return None
    return effective_window({**nolima, base_length: max(base, nolima.get(base_length, base))}, ratio * base)


def choose(absolute: int | None, relative: int | None, rule: str) -> int | None:
    """The window the profile gets: the stricter of the two by default."""
    if rule == "absolute" or relative is None:
        return absolute
    if rule == "relative" or absolute is None:
        return relative
    return min(absolute, relative)


def summarize(cases: list[dict[str, Any]], lengths: list[int]) -> list[dict[str, Any]]:
    """Per tested length: accuracy per task, their mean, case count and seconds (the evidence table). The
    absolute (RULER) accuracy averages passkey and LongEval; the NoLiMa probe is kept apart for its own rule."""
    rows = []
    for length in lengths:
        at = [c for c in cases if c["length"] == length]
        row: dict[str, Any] = {"length": length, "n": len(at), "seconds": round(sum(c["seconds"] for c in at), 1)}
        accs = []
        for task in ("passkey", "longeval", "nolima"):
            scores = [c["score"] for c in at if c["task"] == task]
            row[f"{task}_acc"] = sum(scores) / len(scores) if scores else None
            row[f"{task}_n"] = len(scores)
            accs += [row[f"{task}_acc"]] if scores and task != "nolima" else []
        row["accuracy"] = sum(accs) / len(accs) if accs else 0.0
        rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    out = ["| length | passkey acc | longeval acc | accuracy (RULER) | NoLiMa acc | n | seconds |",
           "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in report["table"]:
        out.append(f"| {r['length']:,} | {pct(r['passkey_acc'])} ({r['passkey_n']}) | {pct(r['longeval_acc'])} "
                   f"({r['longeval_n']}) | {pct(r['accuracy'])} | {pct(r.get('nolima_acc'))} ({r.get('nolima_n', 0)}) "
                   f"| {r['n']} | {r['seconds']:.1f} |")  # fmt: skip
    if report.get("nolima_base") is not None:
        out.append(f"\nNoLiMa base score at {report['nolima_base_length']:,} tokens: {pct(report['nolima_base'])}; "
                   f"window by RULER's absolute {report['threshold']:.0%}: {report['effective_window_absolute']}, by "
                   f"NoLiMa's relative {report['relative_threshold']:.0%} of base: "
                   f"{report['effective_window_relative']} (rule: {report['rule']})")  # fmt: skip
    eff = report["effective_window"]
    if eff:
        out.append(f"\neffective window: {eff:,} tokens")
    elif eff is None:
        out.append("\neffective window: nothing was measured; the profile was not changed")
    else:
        out.append(f"\neffective window: 0, none of the tested lengths reached {report['threshold']:.0%} (auto will "
                   "send every question that is not global to RAG)")  # fmt: skip
    return "\n".join(out)


def run(
    config: Config,
    lengths: list[int],
    depths: list[float],
    n: int = 1,
    threshold: float = 0.85,
    longeval: bool = True,
    write: bool = True,
    notice: Callable[[str], None] | None = None,
    progress: bool = False,
    nolima: bool = True,
    rule: str = "stricter",
    relative: float = 0.85,
) -> dict[str, Any]:
    """Calibrate the profile's generator; writes the evidence JSON and the profile unless ``write`` is False."""
    from chatqa.evaluation.calibrate_cases import build_cases, estimate, measure_prefill, run_case
    from chatqa.generation import load_generator

    window = config.generator.context_window
    if not lengths or max(lengths) > window:
        raise InputError(f"--lengths must be within the profile's window ({window:,} tokens), got {lengths}")
    if not 0.0 < threshold <= 1.0 or not 0.0 < relative <= 1.0 or n < 1:
        raise InputError("--threshold and --relative must be in (0, 1] and --n at least 1")
    if rule not in RULES:
        raise InputError(f"--rule must be one of {', '.join(RULES)}, got {rule!r}")
    generator = load_generator(config.generator)
    try:
        tok_s = measure_prefill(generator)
        cases = build_cases(generator, config, lengths, depths, n, longeval, nolima)
        est = estimate(cases, tok_s)
        if notice:
            notice(f"calibrating {len(cases)} cases ({sum(c.tokens for c in cases):,} prompt tokens) at ~{tok_s:.0f} "
                   f"tok/s prefill: about {est / 60:.1f} min")  # fmt: skip
        start, done = time.perf_counter(), []
        for i, case in enumerate(cases):
            done.append(run_case(generator, case))
            if progress:
                spent = time.perf_counter() - start
                left = spent / max(1e-9, estimate(cases[: i + 1], tok_s)) * estimate(cases[i + 1 :], tok_s)
                print(f"\r[{i + 1}/{len(cases)}] {case.task} {case.length:,}: {spent:.0f}s, ~{left:.0f}s left   ",
                      end="" if i + 1 < len(cases) else "\n", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        generator.close()
    from chatqa.evaluation.calibrate_cases import NOLIMA_BASE_LENGTH

    table = summarize(done, lengths)
    absolute = effective_window({r["length"]: r["accuracy"] for r in table}, threshold)
    base_scores = [c["score"] for c in done if c["task"] == "nolima" and c["length"] == NOLIMA_BASE_LENGTH]
    base = sum(base_scores) / len(base_scores) if base_scores else None
    probe = {r["length"]: r["nolima_acc"] for r in table if r["nolima_acc"] is not None}
    rel = relative_window(probe, base, relative, NOLIMA_BASE_LENGTH)
    eff = choose(absolute, rel, rule)
    path = Path(config.path) if config.path else None
    report = {
        "profile": config.name, "profile_path": str(path) if path else None, "model": config.generator.model,
        "context_window": window, "threshold": threshold, "effective_window": eff, "rule": rule,
        "effective_window_absolute": absolute, "effective_window_relative": rel, "relative_threshold": relative,
        "nolima_base": base, "nolima_base_length": NOLIMA_BASE_LENGTH if base_scores else None,
        "nolima_base_n": len(base_scores), "table": table,
        "prefill_tok_s": round(tok_s, 1), "estimate_s": round(est, 1),
        "seconds": round(time.perf_counter() - start, 1), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cases": done, "evidence": None, "written": False,
    }  # fmt: skip
    if write and path is not None:
        evidence = path.with_name(f"{path.stem}.calibration.json")
        write_atomic(evidence, json.dumps(report, indent=1))
        report["evidence"] = str(evidence)
        if eff is not None:
            write_effective_window(path, eff)
            report["written"] = True
    return report
