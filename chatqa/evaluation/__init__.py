"""Evaluation: official benchmark scorers (see :mod:`chatqa.evaluation.metrics`), suites and the RAG-vs-LC runner.

Kept import-light: ``chatqa.evaluation.run_suite`` and friends resolve on first use, because the CLI imports this
package while building its parser and the runner pulls in the pipeline (torch, faiss, llama.cpp).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RunResult", "load_suite", "run_suite", "score_predictions", "write_report"]

_LAZY = {
    "run_suite": "chatqa.evaluation.runner",
    "RunResult": "chatqa.evaluation.runner",
    "score_predictions": "chatqa.evaluation.report",
    "write_report": "chatqa.evaluation.report",
    "load_suite": "chatqa.evaluation.suites",
}

if TYPE_CHECKING:  # pragma: no cover
    from chatqa.evaluation.report import score_predictions, write_report
    from chatqa.evaluation.runner import RunResult, run_suite
    from chatqa.evaluation.suites import load_suite


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chatqa.evaluation' has no attribute {name!r}")
