"""Start-up cost as a user feels it: ``chatqa --help``, ``chatqa ask`` up to its first line on the terminal, and
``chatqa ask --mode long`` refusing a 5 MB document (issue 11 item 4 asks for that refusal in under 2 s).

Each command runs as a user runs it (``python -m chatqa.cli ...``, a fresh process, ``CHATQA_HOME`` in a temporary
folder), ``--repeat`` times; the median and every run's wall time are kept. ``ask`` runs with stderr on a pty (a
terminal, where stage lines are shown) and is stopped once its first line appears: the time to that line is what
a person waits before seeing that something happens. A last run of each ``ask`` under ``python -X importtime``
records which heavy libraries the command imported.

Run: ``python benchmarks/bench_startup.py [--repeat N] [--out NAME]``; writes
``benchmarks/results/startup[.NAME].json``. The 5 MB document is built from ``../shared/data/gutenberg`` as in
``bench_large_doc.py`` (read in place, never copied into the repo).
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from bench_large_doc import make_document  # noqa: E402

HEAVY = ("torch", "transformers", "sentence_transformers", "llama_cpp", "faiss", "langchain_text_splitters",
         "bm25s", "numpy")  # fmt: skip
QUESTION = "Who was the chief engineer of the canal?"


def wall(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "chatqa.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    return {"seconds": round(time.perf_counter() - start, 3), "exit_code": proc.returncode,
            "stderr_tail": proc.stderr.strip().splitlines()[-1:]}  # fmt: skip


def first_line(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> dict[str, Any]:
    """Seconds until the first visible text on a terminal stderr; the process is then stopped. ``ended_s``: when
    it ended without showing anything there (the answer alone, on stdout)."""
    master, slave = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "chatqa.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=slave, start_new_session=True)  # fmt: skip
    os.close(slave)
    seen, at, ended = b"", None, None
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([master], [], [], 0.01)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the process ended and closed the terminal
                    chunk = b""
                if not chunk:
                    proc.wait(timeout=timeout)
                    ended = time.perf_counter() - start
                    break
                seen += chunk
                text = _visible(seen)
                if text.strip():
                    at = time.perf_counter() - start
                    break
            if proc.poll() is not None and not ready:
                ended = time.perf_counter() - start
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(master)
    return {
        "seconds": None if at is None else round(at, 3),
        "ended_s": None if ended is None else round(ended, 3),
        "first_line": _visible(seen).strip()[:120],
    }


def _visible(raw: bytes) -> str:
    """Terminal output without escape sequences (cursor moves, colours, spinner redraws)."""
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\r\x07]", "", raw.decode("utf-8", "replace"))


def imported(args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatqa.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return [h for h in HEAVY if h in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=None, help="results/startup.<OUT>.json (e.g. before)")
    opts = parser.parse_args()
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n_bytes = make_document(work / "big.txt", 5_000_000)
        (work / "canal.txt").write_text((C.REPO / "examples" / "harrow_canal.txt").read_text(encoding="utf-8"))
        env = {k: v for k, v in os.environ.items() if k != "CHATQA_QUIET"}
        env |= {"CHATQA_HOME": str(work / "home"), "PYTHONPATH": str(C.REPO)}
        ask = ["ask", "--doc", "canal.txt", QUESTION]
        refuse = ["ask", "--doc", "big.txt", "--mode", "long", "What is the first word?"]
        first_line(ask, env, work)  # builds the sample's index once: later runs measure start-up, not indexing
        plans = {
            "help": ("chatqa --help", lambda: wall(["--help"], env, work)),
            "ask_first_line": ("chatqa ask --doc canal.txt '" + QUESTION + "' (stderr on a terminal)",
                               lambda: first_line(ask, env, work)),
            "ask_long_refusal_5mb": ("chatqa ask --doc big.txt --mode long 'What is the first word?'",
                                     lambda: wall(refuse, env, work)),
        }  # fmt: skip
        for name, (command, measure) in plans.items():
            results = [measure() for _ in range(opts.repeat)]
            times = [r["seconds"] for r in results if r["seconds"] is not None]
            ended = [r["ended_s"] for r in results if r.get("ended_s") is not None]  # nothing shown before the end
            runs[name] = {"command": command, "median_s": statistics.median(times) if times else None,
                          "seconds": times, "ended_without_a_line_s": ended, "last": results[-1]}  # fmt: skip
            print(name, json.dumps(runs[name]), flush=True)
        runs["ask_first_line"]["heavy_imports"] = imported(ask, env, work)
        runs["ask_long_refusal_5mb"]["heavy_imports"] = imported(refuse, env, work)
        runs["ask_long_refusal_5mb"]["document_bytes"] = n_bytes
    machine = C.machine_info()
    machine.pop("cwd", None)
    machine["command"] = "python benchmarks/bench_startup.py" + "".join(f" {a}" for a in sys.argv[1:])
    out = {"benchmark": "startup", "title": "chatqa start-up: --help, ask to its first line, a 5 MB refusal",
           "machine": machine, "runs": runs}  # fmt: skip
    path = C.RESULTS / (f"startup.{opts.out}.json" if opts.out else "startup.json")
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(C.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
