"""Run folders: a name that encodes the configuration (HELMET style), the resolved config, and crash-safe rows.

The folder name lets runs of different systems sit side by side and be compared by eye; ``config.json`` keeps
everything needed to re-create the system, and refuses to mix rows of a different configuration into it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chatqa.errors import InputError
from chatqa.files import write_atomic

IGNORED_PROFILE_KEYS = ("home", "path", "name")  # where files live is not part of what is measured
# Settings added after runs were made: absent from an older config.json means the behaviour of this value, which
# is what the code did before the setting existed. Each steers one mode only, and is ignored in runs without it.
LATER_SETTINGS = {
    "profile.routing.self_route_decline": ("self-route", "instruction"),
    "profile.routing.judge_threshold": ("self-route", 0.5),
}


def slug(text: Any) -> str:
    """A path-safe name part: the last component of a model id or path, odd characters replaced."""
    text = re.split(r"[/:\\]", str(text).rstrip("/\\"))[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "x"


def length_tag(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def run_name(cfg: Any, modes: list[str], lengths: list[int] | None, k: int, seed: int | None,
             truncate: str | None, variant: str | None = None) -> str:  # fmt: skip
    parts = [cfg.name, cfg.generator.model, cfg.retriever.model, f"c{cfg.chunking.chunk_tokens}", f"k{k}",
             "-".join(modes), "-".join(map(length_tag, lengths)) if lengths else "all"]  # fmt: skip
    parts += [f"s{seed}"] if seed is not None else []
    parts += [f"t{truncate}"] if truncate else []
    parts += [f"v{variant}"] if variant else []
    return "__".join(slug(p) for p in parts)


def machine() -> dict[str, Any]:
    import platform
    import sys

    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0]}  # fmt: skip


def _fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    suite = {k: v for k, v in config["suite"].items() if k != "path"}
    profile = {k: v for k, v in config["profile"].items() if k not in IGNORED_PROFILE_KEYS}
    profile["routing"] = {k: v for k, v in profile.get("routing", {}).items() if k != "mode"}  # modes are explicit
    options = {k: v for k, v in config["options"].items() if k not in ("limit", "n")}  # more samples extend a run
    # The prompt set is part of what is measured; effective_window only steers `auto` (recorded per invocation).
    profile["generator"] = {k: v for k, v in profile.get("generator", {}).items() if k != "effective_window"}
    flat = _flatten({"suite": suite, "profile": profile, "options": options,
                     "template_set": config.get("template_set")})  # fmt: skip
    for key, (mode, before) in LATER_SETTINGS.items():
        if mode in (options.get("modes") or []):
            flat.setdefault(key, before)
        else:
            flat.pop(key, None)
    return flat


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _command(spec: Any, cfg: Any, options: dict[str, Any]) -> str:
    """The CLI line equivalent to a Python-API call, so every report says how to reproduce it."""
    args = ["chatqa", "eval", "run", "--suite", spec.path or spec.name, "--profile", cfg.name,
            "--modes", ",".join(options["modes"])]  # fmt: skip
    for opt in ("lengths", "depths", "n", "limit", "seed", "data_dir", "top_k", "truncate", "variant", "judge"):
        value = options.get(opt)
        if value is not None:
            args += [f"--{opt.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return shlex.join(args)


def run_path(out: Path, spec: Any, cfg: Any, modes: list[str], opts: Any, ask: dict[str, Any]) -> Path:
    """Where a run with these settings lives: ``<out>/<suite>/<name encoding the configuration>``."""
    return out / slug(spec.name) / run_name(cfg, modes, opts.lengths, ask["top_k"], opts.seed, ask["truncate"],
                                            getattr(opts, "variant", None))  # fmt: skip


@contextlib.contextmanager
def lock(run: Path) -> Iterator[None]:
    """Hold the run folder for one writer: two runs appending to one rows.jsonl would duplicate every row.

    An OS lock (``flock``) on ``<run>/.lock``: released by the kernel when the process dies, so a killed run
    never leaves the folder locked."""
    import fcntl

    run.mkdir(parents=True, exist_ok=True)
    handle = (run / ".lock").open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise InputError(f"{run} is in use by another `chatqa eval run` ({holder}); wait for it to finish "
                             "or use another --out") from None  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def prepare(run: Path, spec: Any, cfg: Any, modes: list[str], opts: Any, ask: dict[str, Any],
            command: str | None) -> Path:  # fmt: skip
    """Create or reopen the run folder; a reopened one must have been made with the same configuration.

    Every invocation that writes rows is recorded with its command, the profile as it was then (effective
    window included: calibration may change it between a run and its resume) and the template set."""
    options = {**asdict(opts), "modes": modes, "top_k": ask["top_k"], "truncate": ask["truncate"],
               "judge": ask.get("judge_profile")}  # fmt: skip
    from chatqa import __version__

    profile = cfg.to_dict()
    config = {"suite": spec.to_dict(), "options": options, "profile": profile,
              "template_set": ask.get("template_set"), "command": command or _command(spec, cfg, options),
              "chatqa_version": __version__, "machine": machine(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    invocation = {k: config[k] for k in ("command", "created", "machine", "chatqa_version", "template_set")}
    invocation["profile"] = {k: v for k, v in profile.items() if k not in IGNORED_PROFILE_KEYS}
    path = run / "config.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        before, now = _fingerprint(old), _fingerprint(config)
        diff = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)]  # fmt: skip
        if diff:
            raise InputError(f"{run} holds a run with other settings ({'; '.join(diff[:3])}); use another --out")
        old.setdefault("invocations", []).append(invocation)
        config = old
    else:
        run.mkdir(parents=True, exist_ok=True)
        config["invocations"] = [invocation]
    _write_json(path, config)
    return run


def note(run: Path, **fields: Any) -> None:
    """Add facts (e.g. model loading seconds) to this invocation's entry in config.json."""
    path = run / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["invocations"][-1].update(fields)
    _write_json(path, config)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_rows(path: Path, repair: bool = True) -> list[dict[str, Any]]:
    """Rows written so far. A row cut off by a kill (no final newline) is ignored, and with ``repair`` cut from
    the file so it is redone; any other unreadable line is an error: dropping it would bias the scores."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    *lines, tail = data.split(b"\n")
    rows = []
    for no, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path} line {no} is not a JSON row; fix or delete that line") from None
    if tail.strip() and repair:
        os.truncate(path, len(data) - len(tail))
    return rows


def rewrite_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace rows.jsonl atomically (rescoring, backfilled diagnostics): a crash leaves the old file whole."""
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class Appender:
    """Appends one JSON row per line and forces it to disk before the next sample starts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Appender:
        self.handle = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, row: dict[str, Any]) -> None:
        self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())
