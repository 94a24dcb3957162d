"""The one record every evaluation loader produces, so runners, RAG/LC paths and scorers share one shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# ../shared/data next to the repository root: the read-only evaluation data is kept outside the repo.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass
class Sample:
    id: str  # unique within a task, stable across runs (used to resume)
    task: str  # e.g. "passkey", "longeval-lines", "quac"
    context: str  # the long document the question is about
    question: str  # the task input (what is asked)
    answers: list[str]  # gold references (may be empty for unanswerable)
    options: list[str] | None = None  # multiple choice options, if any
    messages: list[dict[str, str]] | None = None  # earlier dialogue turns [{"role": ..., "content": ...}]
    meta: dict[str, Any] = field(default_factory=dict)  # length, depth, source file, gold extras


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    """Plain dict for JSONL caches of predictions, so a resumed run can re-attach golds."""
    return asdict(sample)


def sample_from_dict(data: dict[str, Any]) -> Sample:
    """Inverse of :func:`sample_to_dict`; unknown keys are an error so schema drift is caught early."""
    return Sample(**data)


def require_file(path: Path, what: str) -> Path:
    """Fail with one line naming the expected path: the usual cause is data not fetched or a wrong dir."""
    if not path.is_file():
        raise FileNotFoundError(f"{what}: expected file {path} not found")
    return path


def iter_jsonl(path: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream records so that a ``limit`` on a multi-GB InfiniteBench file does not read all of it."""
    if limit is not None and limit <= 0:
        return
    count = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            yield json.loads(line)
            count += 1
            if limit is not None and count >= limit:
                return
