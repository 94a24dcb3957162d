"""The ``chatqa`` command line: a typer app with one module per command in this package.

Output contract: the answer goes to stdout; route, citations and costs follow it (or one JSON object with
``--json`` and nothing else). Progress and notices go to stderr and only on a terminal. A user error, a usage
error included, prints one ``chatqa: error: ...`` line and exits 2; nothing already built is touched.

Adding a command is adding one module here that decorates functions with ``chatqa.cli._app.app``: every
public module of the package is imported at start-up (each keeps its heavy imports inside its functions, so
answering ``ask`` never imports the evaluation code).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

import typer

from chatqa.cli._app import app
from chatqa.errors import ChatQAError

EXIT_USER = 2


def _version(value: bool) -> None:
    if value:
        from chatqa import __version__

        print(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """Answer questions over long documents, routing per question between RAG and long context."""


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the program runs it through :func:`run`; tests call it in-process)."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        if not args:  # help, but as a usage error: on stderr, exit 2
            with contextlib.redirect_stdout(sys.stderr):
                command.main(args=["--help"], prog_name="chatqa", standalone_mode=False)
            return EXIT_USER
        code = command.main(args=args, prog_name="chatqa", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors (typer's click): the same one line as any other bad input
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a group without its action
            print(ctx.get_help(), file=sys.stderr)
            return EXIT_USER
        message = " ".join(exc.format_message().split())
        print(f"chatqa: error: {message}", file=sys.stderr)
        return EXIT_USER
    except ChatQAError as exc:
        print(f"chatqa: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("chatqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    if code == 130:  # typer turns Ctrl-C inside a command into Exit(130), which never reaches the except above
        print("chatqa: interrupted", file=sys.stderr)
    return code if isinstance(code, int) else 0


def run() -> NoReturn:
    """The program (the ``chatqa`` script, ``python -m chatqa.cli``): :func:`main`, then :func:`leave`."""
    leave(main())


def leave(code: int) -> NoReturn:
    """End the process without the interpreter's teardown: flush the output, run the exit handlers, exit.

    Why: after ``chatqa ask`` had printed its answer, freeing torch, transformers and llama.cpp object by object
    kept the process (and the shell prompt) waiting another 1.0-1.3 s on 2 cores, a tenth of a second question.
    Nothing is lost: every file chatqa writes is closed (and renamed into place) before its command returns, the
    ``atexit`` handlers still run (logging, temporary folders, libraries' own), and the operating system frees the
    rest at once. A thread still running is cut, as a daemon would be: chatqa's only background work is loading a
    retriever that the answer turned out not to need (chatqa.preload)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: what could not be written is gone either way
            stream.flush()
    atexit._run_exitfuncs()  # what the interpreter runs first on a normal exit, in the same order
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


__all__ = ["EXIT_USER", "app", "leave", "main", "run"]
