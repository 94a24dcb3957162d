from __future__ import annotations

from pathlib import Path

import pytest

from chatqa.config import Config, load_profile
from chatqa.errors import ConfigError

PROFILES = ["default", "gemma3-270m", "qwen1.5b", "smollm2", "chatqa2-8b", "chatqa2-70b", "vllm"]


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_load(name: str) -> None:
    cfg = load_profile(name)
    assert cfg.name == name
    assert cfg.generator.backend in ("llamacpp", "hf", "openai")
    window = cfg.generator.effective_window or cfg.generator.context_window
    # The RAG budget is sized to what the model can read: k chunks + answer + ~300 tokens of prompt fit.
    assert cfg.chunking.chunk_tokens * cfg.retrieval.top_k + cfg.generator.max_new_tokens + 300 <= max(window, 2048)


def test_paper_profiles_name_the_paper_models() -> None:
    cfg = load_profile("chatqa2-8b")
    assert cfg.generator.model == "nvidia/Llama3-ChatQA-2-8B"
    assert cfg.generator.context_window == 131072
    assert cfg.retriever.model == "intfloat/e5-mistral-7b-instruct"
    assert cfg.retriever.query_prefix.startswith("Instruct: Given a question")


def test_unknown_setting_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("generator:\n  windw: 5\n")
    with pytest.raises(ConfigError, match="windw"):
        load_profile(str(bad))


def test_invalid_yaml_and_missing_profile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("generator: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match="no profile named 'nope'"):
        load_profile("nope")


def test_replace_dotted_overrides_round_trip() -> None:
    cfg = Config().replace(**{"retrieval.top_k": 8, "chunking.chunk_tokens": None})
    assert cfg.retrieval.top_k == 8
    assert cfg.chunking.chunk_tokens == 1200
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        cfg.replace(**{"retrieval.nope": 1})
