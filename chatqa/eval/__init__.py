"""Evaluation: official benchmark scorers (see :mod:`chatqa.eval.metrics`), suites and the RAG-vs-LC runner.

Kept import-light: ``chatqa.eval.run_suite`` and friends resolve on first use, because the CLI imports this
package while building its parser and the runner pulls in the pipeline (torch, faiss, llama.cpp).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RunResult", "load_suite", "run_suite", "score_predictions", "write_report"]

_LAZY = {
    "run_suite": "chatqa.eval.runner",
    "RunResult": "chatqa.eval.runner",
    "score_predictions": "chatqa.eval.report",
    "write_report": "chatqa.eval.report",
    "load_suite": "chatqa.eval.suites",
}

if TYPE_CHECKING:  # pragma: no cover
    from chatqa.eval.report import score_predictions, write_report
    from chatqa.eval.runner import RunResult, run_suite
    from chatqa.eval.suites import load_suite


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chatqa.eval' has no attribute {name!r}")
