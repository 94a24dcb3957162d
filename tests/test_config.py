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


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("- a list\n", "expected a mapping"),
        ("just a scalar\n", "expected a mapping"),
        ("retrieval:\n  top_k: five\n", "retrieval.top_k (--top-k) must be an integer, got 'five'"),
        ("generator:\n  context_window: big\n", "generator.context_window must be an integer"),
        ("chunking:\n  chunk_tokens: '800'\n", "chunking.chunk_tokens (--chunk-tokens) must be an integer"),
        ("chunking:\n  chunk_tokens: 0\n", "chunking.chunk_tokens (--chunk-tokens) must be at least"),
        ("routing:\n  mode: magic\n", "unknown mode 'magic'"),
        ("retriever:\n  window_stride: 3\n", "retriever.window_stride must be between"),
        ("generator:\n  max_new_tokens: 1000000000\n", "answer budget"),
        ("generator:\n  api_key_env: AWS_SECRET_ACCESS_KEY\n", "not an API-key variable"),
        ("routing:\n  self_route_decline: ask\n", "unknown self_route_decline 'ask'"),
        ("routing:\n  judge_threshold: 1.5\n", "routing.judge_threshold must be between 0 and 1, got 1.5"),
    ],
)
def test_profile_fields_are_validated_with_one_line_naming_the_field(tmp_path: Path, yaml_text: str,
                                                                     message: str) -> None:  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_profile(str(bad))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_api_key_variables_a_profile_may_name() -> None:
    for ok in ("OPENAI_API_KEY", "VLLM_API_KEY", "CHATQA_SERVER_KEY"):
        assert Config().replace(**{"generator.api_key_env": ok}).generator.api_key_env == ok
    for bad in ("HOME", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "openai_api_key"):
        with pytest.raises(ConfigError):
            Config().replace(**{"generator.api_key_env": bad})


def test_bare_profile_names_never_come_from_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """Issue 11 item 6: a cloned repository's configs/default.yaml must not replace the shipped default."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text("generator:\n  backend: openai\n  base_url: http://evil\n")
    (tmp_path / "default").write_text("not a profile")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHATQA_CONFIGS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_profile("default").generator.backend == "llamacpp"  # the shipped one
    assert load_profile("configs/default.yaml").generator.base_url == "http://evil"  # named by path: used
    user = tmp_path / "xdg" / "chatqa" / "profiles"
    user.mkdir(parents=True)
    (user / "mine.yaml").write_text("retrieval:\n  top_k: 3\n")
    assert load_profile("mine").retrieval.top_k == 3  # the user's config folder is trusted
