"""The command line as users meet it: real processes, exit codes, stdout/stderr contracts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatqa.config import load_profile
from tests.conftest import SAMPLE, shared


def run(*args: str, home: Path, stdin: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHATQA_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "chatqa.cli", *args], input=stdin, capture_output=True, text=True,
        env=env, timeout=timeout,
    )  # fmt: skip


def test_ask_json_prints_one_object_and_nothing_else(home: Path) -> None:
    r = run("ask", "--doc", str(SAMPLE), "--mode", "rag", "--top-k", "2", "--json",
            "Who was the chief engineer of the canal?", home=home)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert set(out) >= {"answer", "route", "reason", "citations", "usage", "mode", "question"}
    assert out["route"] == "rag" and out["mode"] == "rag"
    assert len(out["citations"]) == 2 and out["citations"][0]["doc"] == SAMPLE.name
    assert {"prefill", "decode", "retrieve", "total"} <= set(out["usage"]["seconds"])
    chunk = load_profile("default").chunking.chunk_tokens
    assert 100 < out["usage"]["prompt_tokens"] <= 2 * chunk + 200  # two chunks at most the default's size + prompt
    assert r.stderr == ""  # piped: no progress bars, no library chatter


def test_ask_plain_output_has_route_and_citations(home: Path) -> None:
    r = run("ask", "--doc", str(SAMPLE), "--mode", "rag", "--top-k", "1", "--retrieval", "bm25",
            "How long is the Greyholm Tunnel?", home=home)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "\nroute: rag (forced: --mode rag)" in r.stdout
    assert f"citations: {SAMPLE.name}:" in r.stdout and "(chunk " in r.stdout
    assert "cost: " in r.stdout


def test_index_then_reuse_and_info(home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "note.md"
    doc.write_text("# Note\n\nThe lighthouse at Skerry Head was lit in 1872.\n")
    first = json.loads(run("index", "--doc", str(doc), "--json", home=home).stdout)
    second = json.loads(run("index", "--doc", str(doc), "--json", home=home).stdout)
    assert first["built"] is True and second["built"] is False and first["path"] == second["path"]
    assert first["chunks"] == 1 and first["documents"] == ["note.md"]
    info = json.loads(run("info", "--json", home=home).stdout)
    assert info["context_window"] == 32768
    assert "qwen2.5-coder-0.5b" in info["generator"] and "[chat prompt]" in info["generator"]  # instruction-tuned
    assert isinstance(info["effective_window"], int) and info["effective_window"] >= 1024  # calibrated
    assert info["index_dir"] == str(home / "indexes")
    assert any("note.md" in row for row in info["indexes"])


def test_stdin_document_and_chat(home: Path) -> None:
    text = SAMPLE.read_text()
    r = run("ask", "--doc", "-", "--mode", "rag", "--top-k", "1", "--json", "Who led the navvies' strike?",
            home=home, stdin=text)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["citations"][0]["doc"] == "stdin"
    chat = run("chat", "--doc", str(SAMPLE), "--mode", "rag", "--top-k", "1", "--json", home=home,
               stdin="Who designed the Sallowby Aqueduct?\nHow many arches does it have?\n")  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    turns = [json.loads(line) for line in chat.stdout.splitlines()]
    assert [t["question"] for t in turns] == ["Who designed the Sallowby Aqueduct?", "How many arches does it have?"]


def bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("generator: {backend: quantum}\n")
    return [
        (["ask", "--doc", str(tmp_path / "nope.txt"), "q"], "no such file"),
        (["ask", "--doc", str(empty), "q"], "empty"),
        (["ask", "--doc", str(binary), "q"], "binary"),
        (["ask", "--doc", str(SAMPLE), "   "], "question is empty"),
        (["ask", "--profile", "nope", "--doc", str(SAMPLE), "q"], "no profile named"),
        (["ask", "--profile", str(bad_yaml), "--doc", str(SAMPLE), "q"], "unknown generator backend"),
        (["ask", "--doc", str(SAMPLE), "--top-k", "0", "q"], "top-k"),
    ]


def test_bad_input_gives_one_line_and_exit_2(home: Path, tmp_path: Path) -> None:
    for args, message in bad_inputs(tmp_path):
        r = run(*args, home=home)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("chatqa: error: "), r.stderr
        assert message in r.stderr, (message, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""


def test_long_mode_refuses_a_novel_that_does_not_fit(home: Path) -> None:
    novel = shared("gutenberg", "pg1342.txt")
    r = run("ask", "--doc", str(novel), "--mode", "long", "Who does Elizabeth marry?", home=home)
    assert r.returncode == 2
    assert "does not fit the generator's window" in r.stderr and "--truncate middle" in r.stderr
    assert r.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [[], ["ask"], ["ask", "--doc", "x"]])
def test_usage_errors_exit_2(home: Path, args: list[str]) -> None:
    assert run(*args, home=home).returncode == 2
