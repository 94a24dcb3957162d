"""Shared fixtures: real embedded models, loaded once per session (they take seconds each to load)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "examples" / "harrow_canal.txt"
QUESTIONS = ROOT / "examples" / "harrow_canal.questions.jsonl"


def shared(*parts: str) -> Path:
    """A file under ../shared/data, or a skip with the reason when that folder is not beside the repo."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (clone the repo with ../shared beside it)")
    return path


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chatqa-home")


@pytest.fixture(scope="session")
def qa(home: Path):
    """The default profile (Gemma 3 270M via llama.cpp + MiniLM), indexes in a temporary home."""
    from chatqa import ChatQA

    return ChatQA.from_profile("default", home=str(home))


@pytest.fixture(scope="session")
def tokenizer(qa):
    return qa.tokenizer


@pytest.fixture(scope="session")
def embedder(qa):
    return qa.embedder
