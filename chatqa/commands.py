"""Sub-commands beyond ask/chat/index/info (eval, calibrate, cache) register here, each from its own module,
so the core CLI stays short and each capability keeps its code in one place."""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXTRA: dict[str, Callable[[argparse.Namespace], int]] = {}


def register_extra(sub: argparse._SubParsersAction) -> None:
    from chatqa import cache_cli
    from chatqa.evaluation import calibrate
    from chatqa.evaluation import cli as eval_cli

    for module in (cache_cli, calibrate, eval_cli):
        module.register(sub, EXTRA)
