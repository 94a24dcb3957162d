"""The per-call stopwatch: a stage inside another is charged to itself only (a model load inside indexing)."""

from __future__ import annotations

import time

from chatqa.timing import Timer


def test_a_nested_stage_pauses_the_enclosing_one() -> None:
    timer = Timer()
    with timer.stage("index"):
        time.sleep(0.05)
        with timer.stage("load"):
            time.sleep(0.1)
        time.sleep(0.05)
    timer.add("prefill", 0.25)
    assert 0.09 <= timer.seconds["load"] < 0.2
    assert 0.09 <= timer.seconds["index"] < 0.2  # its own 0.1 s, not the load inside it
    assert timer.seconds["prefill"] == 0.25
    assert timer.total() >= timer.seconds["index"] + timer.seconds["load"]
