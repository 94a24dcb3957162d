"""The CLI's shape, without loading a model: usage errors keep the one-line contract, `ask` does not import
the evaluation package, and every command module registers itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatqa.cli import app, main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "--doc", "x"], "Missing argument 'question'"),
        (["ask", "--doc", "x", "--top-k", "five", "q"], "'--top-k'"),
        (["ask", "--doc", "x", "--bogus", "q"], "No such option: --bogus"),
        (["nosuchcommand"], "No such command"),
        (["eval", "run", "--suite", "passkey", "--lengths", "4k,lots"], "bad length 'lots'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str, capsys) -> None:
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("chatqa: error: ") and err.count("\n") == 1, err
    assert message in err


def test_no_command_prints_help_on_stderr_and_exits_2(capsys) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "ask" in err and "calibrate" in err


def test_every_command_is_registered() -> None:
    import typer

    group = typer.main.get_command(app)
    assert set(group.commands) == {"ask", "chat", "index", "info", "cache", "calibrate", "eval", "batch"}


def test_importing_the_cli_for_ask_does_not_import_evaluation() -> None:
    code = ("import sys, chatqa.cli, chatqa.cli.ask; "
            "print(sorted(m for m in sys.modules if m.startswith('chatqa.evaluation') or m == 'torch'))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version(capsys) -> None:
    from chatqa import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_the_program_flushes_runs_exit_handlers_and_keeps_the_exit_code(tmp_path) -> None:
    """``leave`` skips the interpreter's teardown (1 s after an answer with both models loaded): buffered output
    through a pipe must still arrive whole, the atexit handlers still run, and the code is the command's."""
    marker = tmp_path / "atexit-ran"
    script = (
        "import atexit, pathlib, sys, threading, time\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()  # a load nobody waits for is cut\n"
        "sys.stdout.write('x' * 100000)\n"
        "from chatqa.cli import leave\n"
        "leave(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 3 and len(out.stdout) == 100000 and marker.read_text() == "yes", out.stderr


def test_python_m_chatqa_cli_exits_with_mains_code() -> None:
    out = subprocess.run([sys.executable, "-m", "chatqa.cli", "ask", "--doc", "x"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 2 and out.stderr.startswith("chatqa: error: ") and out.stdout == ""
