"""Run folders made before a setting existed stay resumable: pure logic on config.json dicts, no model."""

from __future__ import annotations

from typing import Any

from chatqa.evaluation.rundir import _fingerprint

OLD_ROUTING = {"mode": "auto", "truncate": None}  # a config.json written before Self-Route's judge existed


def config(modes: list[str], **routing: Any) -> dict[str, Any]:
    return {"suite": {"name": "novels-qa"}, "options": {"modes": modes}, "template_set": None,
            "profile": {"generator": {"model": "m"}, "routing": {**OLD_ROUTING, **routing}}}  # fmt: skip


def test_a_setting_added_later_reads_as_the_behaviour_it_replaced() -> None:
    modes = ["rag", "self-route"]
    old = _fingerprint(config(modes))
    assert old == _fingerprint(config(modes, self_route_decline="instruction", judge_threshold=0.5))
    assert old != _fingerprint(config(modes, self_route_decline="judge", judge_threshold=0.5))
    assert old != _fingerprint(config(modes, self_route_decline="instruction", judge_threshold=0.7))


def test_a_run_without_self_route_ignores_its_settings() -> None:
    assert _fingerprint(config(["rag", "auto"])) == _fingerprint(config(["rag", "auto"], self_route_decline="judge"))
