"""The map-reduce route as a user sees it (issue 13): a progress bar for the map calls on a terminal, and nothing
on stderr when piped or with ``--json``. Real SmolLM2 through ``chatqa ask``; a profile with a 768-token window
makes a ~1.2K-token document need several map calls, so each run takes seconds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE
from tests.ptys import run_on_terminal

PROFILE = """name: small-mr
generator:
  backend: llamacpp
  model: embedded:smollm2
  prompt_format: chat
  context_window: 768
  max_new_tokens: 32
retriever:
  model: embedded:all-minilm-l6-v2
chunking:
  chunk_tokens: 150
mapreduce:
  section_tokens: 300
  map_max_new_tokens: 24
  reduce_max_new_tokens: 24
"""
QUESTION = "Summarise the history of the canal."


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, str]]:
    work = tmp_path_factory.mktemp("mr-cli")
    (work / "small-mr.yaml").write_text(PROFILE, encoding="utf-8")
    text = SAMPLE.read_text(encoding="utf-8")
    (work / "canal.txt").write_text(text[: text.rfind("\n\n", 0, 5000)], encoding="utf-8")
    args = [sys.executable, "-m", "chatqa.cli", "ask", "--profile", "small-mr.yaml", "--mode", "map-reduce",
            "--doc", "canal.txt", QUESTION]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "CHATQA_QUIET"}  # as a user runs it
    env |= {"CHATQA_HOME": str(work / "home"), "PYTHONPATH": str(ROOT)}
    return work, args, env


def on_terminal(setup, *extra: str) -> tuple[int, str, str]:
    """stderr on a pty (a terminal), stdout piped: what the bar needs to appear, and what the answer looks like.
    Returns (exit code, stdout, stderr as shown)."""
    work, args, env = setup
    return run_on_terminal([*args, *extra], cwd=work, env=env, timeout=300)


def test_map_calls_show_a_bar_on_a_terminal(setup) -> None:
    code, stdout, screen = on_terminal(setup)
    assert code == 0, screen[-2000:]
    found = re.search(r"^map-reduce: (\d+) sections; map (\d+) calls", stdout, re.MULTILINE)
    assert found, stdout
    calls = int(found[2])
    assert calls >= 3, stdout  # the window really forced several sections
    assert "map-reduce: map calls" in screen and f"{calls}/{calls}" in screen, screen[-2000:]
    assert f"section {calls}/{calls}" in screen  # advanced per section, up to the last
    assert "Traceback" not in screen and "map calls" not in stdout.split("\nroute:")[0]


def test_piped_and_json_runs_print_nothing_on_stderr(setup) -> None:
    work, args, env = setup
    piped = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr[-2000:]
    assert "\nroute: map-reduce (forced: --mode map-reduce" in piped.stdout
    code, stdout, screen = on_terminal(setup, "--json")  # a terminal, but --json: one object on stdout, stderr silent
    assert code == 0 and screen == "", screen[-2000:]
    out = json.loads(stdout)
    assert out["route"] == "map-reduce" and out["usage"]["map_calls"] >= 3
