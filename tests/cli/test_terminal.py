"""``chatqa ask`` as a person sees it on a terminal (stdout and stderr each a pty) and as a pipe sees it.

A terminal gets the stages on stderr while they happen (loading, indexing, retrieving, reading the prompt),
then the streamed answer and the footer on stdout; a pipe gets the answer and footer only, and nothing on
stderr. Real models (the default profile on the sample document, RAG with two chunks to stay cheap)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SAMPLE
from tests.ptys import run_on_terminal

ARGS = ["ask", "--doc", str(SAMPLE), "--mode", "rag", "--top-k", "2", "Who was the chief engineer of the canal?"]


def on_terminal(args: list[str], home: Path) -> tuple[int, str, str]:
    """Run the CLI with stdout and stderr each on its own pty; returns (exit code, stdout, stderr) as shown."""
    env = {k: v for k, v in os.environ.items() if k != "CHATQA_QUIET"} | {"CHATQA_HOME": str(home)}
    return run_on_terminal([sys.executable, "-m", "chatqa.cli", *args], cwd=ROOT, env=env, timeout=600,
                           stdout_on_pty=True)  # fmt: skip


def test_a_terminal_shows_the_stages_on_stderr_and_the_answer_on_stdout(tmp_path: Path) -> None:
    code, out, err = on_terminal(ARGS, tmp_path)
    assert code == 0, err
    for stage in ("loading the models", "indexing", "retrieving passages", "prompt tokens"):
        assert stage in err, f"{stage!r} not shown on stderr: {err[-2000:]!r}"
    assert "indexed " in err and "tokens/s" in err  # the finished index says what it built, and how fast
    assert "Batches" not in err and "Batches" not in out  # no sentence-transformers bar
    assert "Wrenfield" in out and "\nroute: rag (forced: --mode rag)" in out.replace("\r\n", "\n")
    assert not out.lstrip("\r\n").startswith(" ")  # the streamed answer has no stray leading space
    assert "retrieving" not in out and "prompt tokens" not in out  # stages never reach stdout


def test_llamacpp_reading_a_long_prompt_shows_a_bar_per_batch(tmp_path: Path) -> None:
    """Phase 2 of issue 14: "reading N prompt tokens" with done/total and an ETA, advanced once per batch."""
    doc = tmp_path / "part.txt"
    doc.write_text(SAMPLE.read_text(encoding="utf-8")[:6000], encoding="utf-8")  # ~1,500 tokens: 3 batches
    args = ["ask", "--profile", "gemma3-270m", "--doc", str(doc), "--mode", "long", "--max-new-tokens", "8",
            "Who was the chief engineer of the canal?"]  # fmt: skip
    code, out, err = on_terminal(args, tmp_path)
    assert code == 0, err
    assert "prompt tokens" in err and "ETA" in err
    assert re.search(r"\b512/1,?\d{3}\b", err), err[-2000:]  # the first batch of 512, out of the whole prompt
    assert "ETA" not in out and "\nroute: long (forced: --mode long" in out.replace("\r\n", "\n")


def test_a_pipe_gets_the_answer_and_footer_and_nothing_on_stderr(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHATQA_QUIET"} | {"CHATQA_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "chatqa.cli", *ARGS], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("Josiah Wrenfield") or "Wrenfield" in done.stdout.splitlines()[0]
    assert "\nroute: rag (forced: --mode rag)" in done.stdout and "\ncitations: " in done.stdout
