"""``chatqa batch`` as a user runs it: rows in the file, a summary on stdout, a progress bar only on a terminal,
one-line errors. Real SmolLM2 on two short documents (tests/batch_data.py); each run is its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.batch_data import ROOT, rows, write_questions
from tests.ptys import run_on_terminal

BASE = ["--profile", "smollm2", "--mode", "long", "--max-new-tokens", "8"]


def chatqa(*args: str, home: Path, **kw: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHATQA_HOME": str(home), "CHATQA_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "chatqa.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600, **kw)  # fmt: skip


def test_piped_batch_writes_rows_and_prints_only_the_summary(tmp_path: Path) -> None:
    questions = write_questions(tmp_path, n_per_doc=1)
    out = tmp_path / "answers.jsonl"
    done = chatqa("batch", "--questions", str(questions), "--out", str(out), *BASE, "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # piped: no bar, no library chatter
    summary = json.loads(done.stdout)
    assert (summary["answered"], summary["errors"], summary["skipped"]) == (2, 0, 0)
    got = rows(out)
    assert sorted(got) == ["a0", "b0"] and all(r["route"] == "long" and r["answer"] for r in got.values())
    again = chatqa("batch", "--questions", str(questions), "--out", str(out), *BASE, home=tmp_path)
    assert again.returncode == 0 and "0 answered, 0 error row(s), 2 already done" in again.stdout


def test_a_terminal_shows_a_progress_bar_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "qs.txt"
    path.write_text("Who first proposed a canal through the vale?\nWho proposed it?\n", encoding="utf-8")
    doc = write_questions(tmp_path).parent / "founding.txt"
    env = {k: v for k, v in os.environ.items() if k != "CHATQA_QUIET"} | {"CHATQA_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "chatqa.cli", "batch", "--questions", str(path), "--doc", str(doc),
           "--out", str(tmp_path / "o.jsonl"), *BASE]  # fmt: skip
    code, stdout, screen = run_on_terminal(cmd, cwd=ROOT, env=env, timeout=600)
    assert code == 0
    assert "batch" in screen and "2/2" in screen and "q/min" in screen  # done/total, rate (and ETA)
    assert "2 answered" in stdout and "batch" not in stdout.split("->")[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--questions", "{missing}"], "cannot read the questions"),
        (["--questions", "{bad}"], "line 1: not JSON"),
        (["--questions", "{plain}", "--workers", "2"], "apply to --executor ray"),
        (["--questions", "{plain}", "--executor", "dask"], "unknown executor 'dask'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.jsonl").write_text("{nope\n", encoding="utf-8")
    (tmp_path / "plain.txt").write_text("Who?\n", encoding="utf-8")
    names = {"missing": str(tmp_path / "none.jsonl"), "bad": str(tmp_path / "bad.jsonl"),
             "plain": str(tmp_path / "plain.txt")}  # fmt: skip
    argv = [a.format(**names) for a in args]
    done = chatqa("batch", *argv, "--doc", str(ROOT / "examples" / "harrow_canal.txt"), "--out",
                  str(tmp_path / "o.jsonl"), "--profile", "smollm2", home=tmp_path)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("chatqa: error: ") and done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp_path / "o.jsonl").exists()
