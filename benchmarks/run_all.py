"""Run every benchmark, then write benchmarks/results/latest.json and latest.md: the one command for speed.

Why one command: speed claims belong next to the machine and the exact command that produced them, and a
reader wants one table per benchmark with each target marked met or missed, not three scattered outputs.
Each benchmark runs as its own process (as ``python benchmarks/bench_<name>.py``), so one crashing does not
lose the others; a missed target is a result, not a failure (the exit code is non-zero only on a crash).
Run: ``python benchmarks/run_all.py [--quick] [--only index,ask,repeat]``. Benchmarks left out by ``--only`` keep
their last stored result (``results/<name>.json``, each with its own date, machine and command), so one slow
benchmark can be re-measured without re-running the others; ``--render`` only rebuilds latest.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402 - the shared helpers sit beside this script

BENCHMARKS = ("index", "ask", "repeat", "batch")
# Run alone (each needs the quiet box to itself, see benchmarks/README.md): never run from here, but their stored
# results are summarised with the others.
RUN_ALONE = ("first_answer",)
CAVEAT = (
    "Measured on a shared 2-core box (other engineers' jobs run beside it): expect +-25% between runs, more "
    "when the load average (start/end, above) is over 2. Ratios of back-to-back runs are steadier than absolutes."
)


def run(name: str, quick: bool) -> dict[str, Any]:
    out = C.default_out(name, quick)
    out.unlink(missing_ok=True)  # never report a stale result as this run's
    cmd = [sys.executable, str(C.BENCH_DIR / f"bench_{name}.py"), "--out", str(out), *(["--quick"] if quick else [])]
    C.log(f"running {' '.join(cmd)}")
    start = time.perf_counter()
    code = subprocess.call(cmd, cwd=C.REPO)
    seconds = time.perf_counter() - start
    if code != 0 or not out.is_file():
        return {"benchmark": name, "error": f"exit code {code}", "seconds": round(seconds, 1)}
    return C.scrub(json.loads(out.read_text(encoding="utf-8")))


def markdown(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        "# chatqa benchmarks: latest run" + (" (--quick smoke run)" if summary["quick"] else ""),
        "",
        f"Command: `{summary['command']}` (from the repository root), {m['date']}, {summary['seconds'] / 60:.0f} min.",
        "",
        C.markdown_table(
            ["machine", ""],
            [
                ["platform", m["platform"]],
                ["CPU", m["cpu_model"]],
                ["cores", f"{m['cores']} ({m['cores_usable']} usable)"],
                ["RAM", f"{m['ram_gib']} GiB"],
                ["python", m["python"]],
                ["packages", versions],
                ["load average start / end", f"{m['load_average_start']} / {m['load_average_end']}"],
                ["chatqa source (chatqa/ + configs/ sha256)", m.get("chatqa_source_sha256") or "-"],
            ],
        ),
        "",
        CAVEAT,
        "",
        *(
            [
                f"Measured by this command: {', '.join(summary['rerun']) or 'nothing'}; the other sections are the "
                "stored results of earlier runs, with their own command and date (the load average above is this "
                "command's).",
                "",
            ]
            if set(summary.get("rerun", BENCHMARKS)) != set(summary["benchmarks"])
            else []
        ),
        "## Targets",
        "",
        C.targets_table(summary["targets"]) if summary["targets"] else "(no targets)",
        "",
        f"Met {summary['counts']['met']}, missed {summary['counts']['missed']}, TODO {summary['counts']['todo']}.",
        "",
    ]
    for name, result in summary["benchmarks"].items():
        if "error" in result:
            lines += [f"## {name}", "", f"**Did not complete** ({result['error']}): see the console output.", ""]
        else:
            m = result["machine"]
            lines += [C.report(result), f"Command: `{m['command']}` ({m.get('date', '?')})", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes; writes latest.quick.{json,md}")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of " + ",".join(BENCHMARKS))
    p.add_argument("--render", action="store_true", help="run nothing: rebuild latest.* from stored results")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.perf_counter()
    snapshot = C.snapshot_code()  # one frozen copy of chatqa/ for all three benchmarks
    C.log(f"measuring a copy of chatqa/ and configs/ (sha256 {snapshot['sha256'][:12]}) at {snapshot['path']}")
    results = {}
    for name in (*BENCHMARKS, *RUN_ALONE):
        stored = C.default_out(name, args.quick)
        if name in names and not args.render:
            results[name] = run(name, args.quick)
        elif stored.is_file():  # a result of an earlier run: its own machine block says when and how
            results[name] = C.scrub(json.loads(stored.read_text(encoding="utf-8")))
    targets = [t for r in results.values() for t in r.get("targets", [])]
    summary = {
        "quick": args.quick,
        "rerun": [] if args.render else names,  # the others are earlier results, each dated in its section
        "command": C.command_line(),
        "machine": C.machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
        "counts": {s: sum(t["status"] == s for t in targets) for s in ("met", "missed", "todo")},
        "targets": targets,
        "benchmarks": results,
    }
    stem = "latest.quick" if args.quick else "latest"
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    (C.RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (C.RESULTS / f"{stem}.md").write_text(markdown(summary), encoding="utf-8")
    print(f"\nwrote {C.user_command([str(C.RESULTS / (stem + '.json'))])} and {stem}.md")
    failed = [n for n, r in results.items() if "error" in r]
    if failed:
        print(f"did not complete: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
