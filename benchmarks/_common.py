"""Shared plumbing for the benchmark scripts: machine facts, one subprocess per measurement, tables, targets.

Why a subprocess per measurement: peak RSS is a per-process high-water mark, so two paths measured in one
process would share (and hide) each other's peak, and a cold start (imports, model load) only happens once
per process. Each child writes its result to a JSON file rather than stdout, because the libraries it loads
are free to print. The parent collects the child's own rusage with ``os.wait4`` (per child, unlike
``RUSAGE_CHILDREN``, which is a running maximum over all children) and the child reports ``VmHWM`` itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
# The shared data sits beside the repo (../shared), as in CI; BENCH_DATA points elsewhere if needed.
DATA = Path(os.environ.get("BENCH_DATA", REPO.parent / "shared" / "data"))
NOVELS = {  # Project Gutenberg ids -> titles; read from shared/, never copied into the repo
    "pg11": "Alice's Adventures in Wonderland",
    "pg1342": "Pride and Prejudice",
    "pg1661": "The Adventures of Sherlock Holmes",
    "pg2701": "Moby Dick",
}
START_LOAD = os.getloadavg()  # the box's load when this script started: other engineers' jobs add noise
PACKAGES = (
    "torch",
    "llama-cpp-python",
    "faiss-cpu",
    "sentence-transformers",
    "transformers",
    "numpy",
    "langchain-community",
    "langchain-huggingface",
    "langchain-text-splitters",
    "chatqa",
)


# -- machine facts ----------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that produced a result, as a user types it from the repository root (see ``user_command``)."""
    return user_command(["python", *(sys.argv if argv is None else argv)])


def user_command(args: Sequence[str]) -> str:
    """``python`` for the interpreter and paths relative to the checkout: a committed report carries no machine
    paths (interpreter, home folder, worktree, temporary folders)."""
    shown = []
    for i, arg in enumerate(args):
        path = Path(arg)
        if i == 0 and path.name.startswith("python"):
            arg = "python"
        elif path.is_absolute():
            parts = path.parts
            if "benchmarks" in parts:  # a script or result of this (or another) checkout
                arg = Path(*parts[parts.index("benchmarks") :]).as_posix()
            else:
                arg = f"<{path.name or 'path'}>"
        shown.append(arg)
    return shlex.join(shown)


def _imported_from(path: str | None) -> str | None:
    """Where the child's chatqa came from, without the machine's folders: the run's frozen copy, or the tree."""
    if not path:
        return None
    return "<frozen copy>/chatqa/__init__.py" if "bench-code-" in path else user_command([path])


def _scrub_imports(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "chatqa_imported_from" and isinstance(value, str) and value.startswith("/"):
                node[key] = _imported_from(value)
            else:
                _scrub_imports(value)
    elif isinstance(node, list):
        for item in node:
            _scrub_imports(item)


def scrub(result: dict[str, Any]) -> dict[str, Any]:
    """A stored result made before commands were recorded as typed: the same numbers, no machine paths."""
    _scrub_imports(result)
    machine = result.get("machine", {})
    machine.pop("cwd", None)
    if isinstance(machine.get("command"), str):
        machine["command"] = user_command(shlex.split(machine["command"]))
    return result


def machine_info() -> dict[str, Any]:
    """What the numbers depend on. Versions come from package metadata, so nothing heavy is imported."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "load_average_start": [round(x, 2) for x in START_LOAD],  # 1/5/15-minute load: other jobs = noise
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "command": command_line(),
        "chatqa_source_sha256": os.environ.get("BENCH_SNAPSHOT_SHA256"),  # chatqa/ + configs/ as measured
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- a frozen copy of the code under test --------------------------------------------------------------------
def snapshot_code() -> dict[str, str]:
    """Copy chatqa/ and configs/ once per run; every child imports that copy.

    Why: other engineers edit the working tree while a long run is in progress, and a prompt format that
    changes between two children makes their comparison meaningless. The copy goes first on PYTHONPATH (the
    editable install's finder comes after the path) and first in CHATQA_CONFIGS; its sha256 is recorded."""
    import atexit
    import shutil

    existing = os.environ.get("BENCH_SNAPSHOT")
    if existing and Path(existing).is_dir():
        sys.path.insert(0, existing)
        return {"path": existing, "sha256": os.environ.get("BENCH_SNAPSHOT_SHA256", "?")}
    root = Path(tempfile.mkdtemp(prefix="bench-code-"))
    shutil.copytree(REPO / "chatqa", root / "chatqa", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", root / "configs")
    atexit.register(shutil.rmtree, root, True)
    digest = hashlib.sha256()
    for f in sorted([*root.glob("chatqa/**/*.py"), *root.glob("configs/*.yaml")]):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    os.environ["BENCH_SNAPSHOT"] = str(root)
    os.environ["BENCH_SNAPSHOT_SHA256"] = digest.hexdigest()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    os.environ["CHATQA_CONFIGS"] = os.pathsep.join(
        filter(None, [str(root / "configs"), os.environ.get("CHATQA_CONFIGS")])
    )
    sys.path.insert(0, str(root))
    return {"path": str(root), "sha256": digest.hexdigest()}


# -- memory and children ------------------------------------------------------------------------------------
def peak_rss_mb() -> float | None:
    """This process's peak resident set (VmHWM), read inside the child so it is per measured path."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_seconds() -> float:
    """User + system CPU time of this process: less sensitive than wall time to other jobs on the box."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return round(ru.ru_utime + ru.ru_stime, 3)


class ChildError(RuntimeError):
    pass


def run_child(script: Path, kind: str, spec: dict[str, Any], timeout: float = 3 * 3600) -> dict[str, Any]:
    """Run ``script --child kind`` in a fresh interpreter and return its result plus the parent's view.

    Output of the child goes to a log file (shown if it fails); the child's result comes back as JSON."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        spec_path, result_path, log_path = Path(tmp, "spec.json"), Path(tmp, "result.json"), Path(tmp, "log")
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ, HF_HUB_OFFLINE="1", CHATQA_QUIET="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, str(script), "--child", kind, "--spec", str(spec_path), "--result", str(result_path)]
        start = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
            deadline = start + timeout
            while True:  # wait4 gives this child's own rusage (peak RSS, CPU time)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not result_path.exists():
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise ChildError(f"child '{kind}' failed (exit {proc.returncode}):\n{tail}")
        result = json.loads(result_path.read_text(encoding="utf-8"))
    result["process"] = {
        "wall_s": round(wall, 3),  # interpreter start, imports, model loads, the work, exit
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "maxrss_mb": round(usage.ru_maxrss / 1024, 1),  # kB on Linux
    }
    return result


def child_main(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]], args: argparse.Namespace) -> int:
    """Entry point inside a child: run one handler, add its peak RSS and CPU time, write the JSON result."""
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    try:
        result = handlers[args.child](spec)
    except Exception:  # noqa: BLE001 - reported to the parent through the log and exit code
        traceback.print_exc()
        return 1
    result["peak_rss_mb"] = peak_rss_mb()
    result["child_cpu_s"] = cpu_seconds()
    module = sys.modules.get("chatqa")
    result["chatqa_imported_from"] = _imported_from(getattr(module, "__file__", None))
    Path(args.result).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run that checks the script works")
    p.add_argument("--out", type=Path, help="where to write the JSON result (default: benchmarks/results/)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def main(
    doc: str,
    name: str,
    title: str,
    handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]],
    measure: Callable[[argparse.Namespace, Path], dict[str, Any]],
    argv: Sequence[str] | None = None,
) -> int:
    """The skeleton every benchmark shares: as a child, run one handler; as the parent, freeze the code under
    test, measure in a temporary folder (``measure(args, folder)`` returns the result's body), write the JSON."""
    args = parser(doc.splitlines()[0]).parse_args(argv)
    if args.child:
        return child_main(handlers, args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    snapshot_code()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        body = measure(args, Path(tmp))
    finish(name, title, args, body, started)
    return 0


def default_out(name: str, quick: bool) -> Path:
    """Quick smoke runs never overwrite the results of a full run."""
    return RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")


# -- documents ----------------------------------------------------------------------------------------------
def novel(name: str) -> Path:
    path = DATA / "gutenberg" / f"{name}.txt"
    if not path.is_file():
        raise SystemExit(f"benchmark data not found: {path} (clone with ../shared beside the repo, or set BENCH_DATA)")
    return path


def gemma_count(profile: str = "default") -> Callable[[str], int]:
    """chatqa's own generator-token count (the profile's vocabulary, loaded alone: well under a second)."""
    from chatqa.config import load_profile
    from chatqa.generation import load_tokenizer

    return load_tokenizer(load_profile(profile).generator).count


def cut_paragraphs(text: str, n_tokens: int, count: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` that ends at a paragraph break and has at most ``n_tokens`` tokens.

    Cut at paragraphs so no sentence is split; counted exactly, since summed paragraph counts drift."""
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    sizes = [count(p) + 1 for p in paragraphs]  # +1: the blank line joining them, roughly
    k, total = 0, 0
    while k < len(paragraphs) and total + sizes[k] <= n_tokens:
        total += sizes[k]
        k += 1
    while k > 1 and count("\n\n".join(paragraphs[:k])) > n_tokens:
        k -= 1
    while k < len(paragraphs) and count("\n\n".join(paragraphs[: k + 1])) <= n_tokens:
        k += 1
    return "\n\n".join(paragraphs[:k]) + "\n"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- targets and tables -------------------------------------------------------------------------------------
def target(
    benchmark: str, name: str, measured: float | None, op: str, threshold: float, detail: str = ""
) -> dict[str, Any]:
    """A target with its verdict. ``measured`` is a ratio; None (not measurable here) is reported as TODO."""
    if measured is None:
        status = "todo"
    elif op == ">=":
        status = "met" if measured >= threshold else "missed"
    elif op == "<=":
        status = "met" if measured <= threshold else "missed"
    else:
        raise ValueError(op)
    return {
        "benchmark": benchmark,
        "target": name,
        "goal": f"{op} {threshold:g}x",
        "measured": None if measured is None else round(measured, 3),
        "status": status,
        "detail": detail,
    }


def check(benchmark: str, name: str, ok: bool | None, detail: str = "") -> dict[str, Any]:
    """A yes/no target (for example: identical answers)."""
    status = "todo" if ok is None else ("met" if ok else "missed")
    return {"benchmark": benchmark, "target": name, "goal": "yes", "measured": ok, "status": status, "detail": detail}


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    rows = []
    for t in targets:
        measured = t["measured"]
        shown = f"{measured:.3f}x" if isinstance(measured, float) else fmt(measured)
        status = {"met": "met", "missed": "**missed**", "todo": "TODO"}.get(t["status"], t["status"])
        rows.append([t["target"], t["goal"], shown, status, t.get("detail", "")])
    return markdown_table(["target", "goal", "measured", "status", "detail"], rows)


def report(result: dict[str, Any]) -> str:
    """The markdown block for one benchmark: its tables, its targets and its notes."""
    parts = [f"## {result['title']}", ""]
    for table in result["tables"]:
        if table.get("caption"):
            parts += [table["caption"], ""]
        parts += [markdown_table(table["columns"], table["rows"]), ""]
    if result["targets"]:
        parts += ["Targets:", "", targets_table(result["targets"]), ""]
    for note in result.get("notes", []):
        parts.append(f"- {note}")
    if result.get("notes"):
        parts.append("")
    return "\n".join(parts)


def finish(name: str, title: str, args: argparse.Namespace, body: dict[str, Any], started: float) -> dict[str, Any]:
    """Attach machine facts and the command, write the JSON, print the tables; returns the result."""
    result = {
        "benchmark": name,
        "title": title,
        "quick": bool(args.quick),
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - started, 1),
        **body,
    }
    out = args.out or default_out(name, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(report(result))
    print(f"wrote {user_command([str(out)])} ({result['seconds']:.0f} s)")
    return result


def log(message: str) -> None:
    """Progress on stderr, so a long run can be followed without mixing into the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
