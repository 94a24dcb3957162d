"""What a terminal shows while an answer is prepared (rendered to a recording console; no model)."""

from __future__ import annotations

import io

from rich.console import Console

from chatqa import progress


def _stages() -> tuple[progress.Stages, io.StringIO]:
    screen = io.StringIO()
    stages = progress.Stages()
    stages.console = Console(file=screen, force_terminal=True, width=100)
    return stages, screen


def test_stages_then_a_bar_per_batch_then_the_next_stage() -> None:
    stages, screen = _stages()
    stages.show("loading the models")
    progress.stage("indexing: embedding 12 windows")  # library code reaches the line on screen
    report = stages.counter("reading 1,500 prompt tokens")
    report(0, 1500)
    report(512, 1500)
    stages.show("reading 900 prompt tokens")  # Self-Route's second generation replaces the bar
    report(1024, 1500)  # a late report from the first bar is ignored, not an error
    again = stages.counter("reading 900 prompt tokens")
    again(900, 900)
    stages.stop()
    shown = screen.getvalue()
    for text in ("loading the models", "indexing: embedding 12 windows", "512/1500", "900/900", "ETA"):
        assert text in shown, text
    assert "1024/1500" not in shown and progress._active is None


def test_nothing_reaches_a_screen_when_no_stage_line_is_shown() -> None:
    stages, screen = _stages()
    progress.stage("indexing")  # no Stages active: library calls are no-ops
    progress.say("indexed 3 chunks")
    assert screen.getvalue() == "" and progress._active is None
    stages.show("x")
    stages.stop()
