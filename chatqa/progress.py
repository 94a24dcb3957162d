"""Terminal behaviour: progress and library chatter only on an interactive terminal, silence otherwise.

Third-party loaders (transformers, sentence-transformers, llama.cpp) print bars and notices by default;
piped output and ``--json`` must contain only what chatqa means to print.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from chatqa.weights import offline

_callback = None  # keep a reference: llama.cpp holds only the C pointer
_quieted = False
_active: Stages | None = None  # the stage line on screen, if any: library code updates it through stage()/say()


def interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("CHATQA_QUIET", "") in ("", "0")


def quiet_libraries() -> None:
    """Silence model-loading noise, once per process (later calls return at once).

    Nothing is imported here: transformers alone takes over a second to import, and a command that refuses its
    input (or only needs a tokenizer) must not pay for libraries it never uses. Environment defaults read by
    transformers and huggingface_hub when they are imported do the same job; a library imported before this call
    is quieted directly. llama.cpp's own log lines are dropped by :func:`quiet_llama` when a GGUF is loaded."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    offline()
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading bars follow the hub's
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "bm25s", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # imported before us: it has read its environment already
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def quiet_llama() -> None:
    """Drop llama.cpp's log lines (model metadata, context sizes); called before a GGUF is loaded, once."""
    global _callback
    if _callback is not None:
        return
    try:
        import llama_cpp

        @llama_cpp.llama_log_callback
        def _drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            return None

        _callback = _drop
        llama_cpp.llama_log_set(_callback, ctypes.c_void_p())
    except (ImportError, AttributeError):  # pragma: no cover - llama-cpp-python is a dependency
        pass


class Stages:
    """What a person sees on a terminal while an answer is prepared: one spinner line on stderr naming the
    stage under way (loading the model, indexing, retrieving, reading N prompt tokens), replaced as stages
    change and gone before the answer streams. Never used off a terminal or with ``--json``."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._line: Any = None  # the spinner line (rich Live), or
        self._bar: Any = None  # a stage's bar (rich Progress): one of the two at a time

    def show(self, text: str) -> None:
        """Replace the stage line at once (not at the next tick: a stage can be over before it)."""
        global _active
        from rich.live import Live
        from rich.spinner import Spinner

        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self._line is None:
            self._line = Live(console=self.console, transient=True, refresh_per_second=10)
            self._line.start()
        self._line.update(Spinner("dots", text=text), refresh=True)
        _active = self

    def counter(self, label: str) -> Callable[[int, int], None]:
        """``report(done, total)`` for a stage that can say how far it is (llama.cpp reading a prompt batch by
        batch): the stage line becomes a bar with an ETA at the first report, until the next stage."""
        from rich import progress as rp

        mine: list[Any] = []  # [progress, task] once started

        def report(done: int, total: int) -> None:
            global _active
            if not mine:
                self.stop()
                columns = (rp.SpinnerColumn(), rp.TextColumn("{task.description}"), rp.BarColumn(),
                           rp.MofNCompleteColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn())  # fmt: skip
                self._bar = rp.Progress(*columns, console=self.console, transient=True)
                self._bar.start()
                mine.extend([self._bar, self._bar.add_task(label, total=total, completed=done)])
                _active = self
            if self._bar is mine[0]:  # a later stage (or the answer) may have replaced it
                self._bar.update(mine[1], completed=done, total=total)

        return report

    def say(self, text: str) -> None:
        """A line that stays (what a finished stage did), printed above the stage line."""
        self.console.print(text, style="dim", highlight=False, markup=False)

    def stop(self) -> None:
        global _active
        for shown in (self._line, self._bar):
            if shown is not None:
                shown.stop()
        self._line = self._bar = None
        if _active is self:
            _active = None


def stage(text: str) -> None:
    """Name the stage under way on the stage line, if one is on screen (a terminal); else nothing."""
    if _active is not None:
        _active.show(text)


def say(text: str) -> None:
    """A dim line that stays, if a stage line is on screen (a terminal); else nothing."""
    if _active is not None:
        _active.say(text)


@contextlib.contextmanager
def bar(enabled: bool, total: int, label: str, transient: bool = True) -> Iterator[Callable[[str], None]]:
    """A progress bar with ETA on stderr when ``enabled`` (a terminal); a no-op otherwise. ``transient=False``
    leaves the finished bar on screen (an eval run's record of what it did)."""
    if not enabled or total == 0:
        yield lambda _: None
        return
    if _active is not None:  # one live display at a time: the bar replaces the stage line
        _active.stop()
    from rich import progress as rp
    from rich.console import Console

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
               rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn())  # fmt: skip
    with rp.Progress(*columns, console=Console(stderr=True), transient=transient) as progress:
        task = progress.add_task(label, total=total)
        yield lambda what: progress.update(task, advance=1, description=f"{label}: {what}")
