"""A per-call stopwatch: named stages, each charged only its own time (a stage inside another pauses it).

Answers report where their seconds went (load, index, retrieve, prefill, decode); nesting keeps a model load
that happens inside indexing out of the indexing figure without any arithmetic at the call sites.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LABELS = {"load": "loading the models", "index": "indexing the documents", "retrieve": "retrieving passages"}


class Timer:
    """``stages``: a :class:`chatqa.progress.Stages` to show each stage on a terminal as it starts."""

    def __init__(self, stages: Any = None) -> None:
        self.stages = stages
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._open: list[list[Any]] = []  # [stage, since]: the innermost stage is the one being charged

    def add(self, stage: str, seconds: float) -> None:
        """Charge time measured elsewhere (the generator's own prefill and decode split)."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._open:  # pause the enclosing stage
            outer = self._open[-1]
            self.add(outer[0], now - outer[1])
        self._open.append([name, now])
        self.show(LABELS.get(name, name))
        try:
            yield
        finally:
            now = time.perf_counter()
            _, since = self._open.pop()
            self.add(name, now - since)
            if self._open:
                self._open[-1][1] = now  # the enclosing stage resumes

    def total(self) -> float:
        return time.perf_counter() - self.start

    def show(self, text: str) -> None:
        if self.stages is not None:
            self.stages.show(text)

    def quiet(self) -> None:
        """The answer starts streaming: the stage line goes away."""
        if self.stages is not None:
            self.stages.stop()
