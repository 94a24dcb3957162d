"""Two short documents cut from the bundled sample and a question file over both, shared by the batch tests.

Each document is about 700 SmolLM2 tokens: long enough that a second long-context question on it reuses a
512-token-aligned KV prefix, short enough that a question costs a second or two on a shared 2-core box.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "harrow_canal.txt"
QUESTIONS = [
    "Who first proposed a canal through the vale?",
    "When did the Harrow Vale Canal Act receive the royal assent?",
    "How long is the Greyholm Tunnel?",
    "Where were the bricks for the tunnel lining fired?",
]
PROFILE = "smollm2"  # the smallest embedded generator (135M): the mechanics, not the answers, are under test
ASK = {"mode": "long", "max_new_tokens": 16}


def write_docs(folder: Path) -> tuple[Path, Path]:
    text = SAMPLE.read_text(encoding="utf-8")
    a, b = folder / "founding.txt", folder / "tunnel.txt"
    a.write_text(text[3000:6300], encoding="utf-8")
    b.write_text(text[16000:19300], encoding="utf-8")
    return a, b


def write_questions(folder: Path, n_per_doc: int = 2) -> Path:
    """``n_per_doc`` questions on each document, interleaved (a-1, b-1, a-2, ...): grouping is the batch's job."""
    a, b = write_docs(folder)
    path = folder / "questions.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_per_doc):
            q = QUESTIONS[i % len(QUESTIONS)]
            for tag, doc in (("a", a), ("b", b)):
                f.write(json.dumps({"id": f"{tag}{i}", "question": q, "docs": [str(doc)]}) + "\n")
    return path


def rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def same(row: dict) -> tuple:
    """What must be identical whichever executor answered: not timings, not how much was cached."""
    return (row["answer"], row["route"], row["reason"], row["mode"], row["question"], row["citations"], row["error"])
