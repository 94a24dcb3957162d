"""One config shape for the library, the CLI and the eval runner.

A profile is a YAML file in ``configs/`` whose sections mirror the dataclasses below. Keeping one shape means
a run folder can store the resolved config and re-create exactly the system that produced it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chatqa.errors import ConfigError, InputError
from chatqa.routing import MODES

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
METHODS = ("dense", "bm25", "hybrid")
# Environment variables a profile may name as its API key: ones a user created for this purpose. A profile
# found in a cloned repository must not be able to send, say, AWS_SECRET_ACCESS_KEY to its base_url.
API_KEY_ENV = re.compile(r"[A-Z][A-Z0-9_]*_API_KEY|CHATQA_[A-Z0-9_]+")


@dataclass
class GeneratorConfig:
    backend: str = "llamacpp"  # llamacpp | hf | openai
    model: str = "embedded:gemma3-270m"  # embedded:<name>, a local path, or a hub id the user has cached
    gguf_file: str | None = None  # for hf loading a GGUF directory
    prompt_format: str = "completion"  # chatqa | chat | completion
    context_window: int = 32768
    effective_window: int | None = None  # by `chatqa calibrate`; None: trust context_window; 0: trust no length
    max_new_tokens: int = 256  # also the answer budget when checking that a document fits
    threads: int | None = None
    rope: dict[str, Any] | None = None  # {"type": "linear"|"dynamic"|"yarn", "factor": 4.0, ...}
    dtype: str | None = None  # hf: auto picks bf16 on GPU, fp32 on CPU
    device: str | None = None  # hf: cuda | cpu | None (auto)
    base_url: str | None = None  # openai: http://host:port/v1
    api_key_env: str = "OPENAI_API_KEY"
    tokenizer: str | None = None  # openai: local tokenizer (HF dir or GGUF) for exact token counts
    timeout: float = 600.0


@dataclass
class RetrieverConfig:
    model: str = "embedded:all-minilm-l6-v2"
    query_prefix: str = ""
    passage_prefix: str = ""
    max_seq_tokens: int | None = None  # None: the model's own max_seq_length
    window_stride: float = 0.75  # windows overlap by 25% so no sentence is only seen cut in half
    pooling: str = "max"  # max | mean: how window scores/vectors become one chunk score
    batch_size: int = 32
    device: str | None = None


@dataclass
class ChunkingConfig:
    chunk_tokens: int = 1200
    overlap_tokens: int = 0


@dataclass
class RetrievalConfig:
    method: str = "hybrid"  # dense | bm25 | hybrid
    top_k: int = 5
    rrf_k: int = 60
    index_type: str = "auto"  # flat | hnsw | ivf | auto
    ann_threshold: int = 200_000  # vectors above which `auto` switches from exact search to HNSW
    history_turns: int = 2  # earlier user turns folded into the retrieval query in multi-turn chat


@dataclass
class RoutingConfig:
    mode: str = "auto"  # rag | long | auto | self-route | map-reduce
    truncate: str | None = None  # None | "middle": only when the user asks (InfiniteBench convention)
    # How Self-Route's RAG step declines: "instruction" (the paper's: the answer prompt asks for "unanswerable",
    # read from the answer's words) or "judge" (the plain RAG answer, then a yes/no question over the same chunks
    # read from the next-token probabilities; declined when P(yes) < judge_threshold). See chatqa/routing.py.
    self_route_decline: str = "instruction"
    judge_threshold: float = 0.5


@dataclass
class MapReduceConfig:
    """Budgets of the map-reduce route (global questions over documents longer than the window)."""

    map_max_new_tokens: int = 96  # each section's notes: short, since every section pays for its own
    reduce_max_new_tokens: int = 192  # each intermediate merge of notes; the final answer uses the answer budget
    section_tokens: int | None = None  # cap on document tokens per map call; None: what the window leaves
    max_map_calls: int | None = None  # refuse documents needing more map calls (--max-map-calls)
    # Invite "NONE" for sections with nothing on the question: shorter notes for a model that judges relevance,
    # every section dropped for one that does not (the embedded 0.5B: see MAP_INSTRUCTION in chatqa/prompting.py).
    none_reply: bool = False


@dataclass
class Config:
    name: str = "default"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    mapreduce: MapReduceConfig = field(default_factory=MapReduceConfig)
    home: str | None = None  # where indexes and KV states live; CHATQA_HOME or ./indexes when unset
    path: str | None = None  # the YAML file this came from (so `calibrate` can write back)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        config = _build(cls, data, "config")
        validate(config)
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **dotted: Any) -> Config:
        """Return a copy with ``section.key`` overrides applied (None values are ignored), validated like a
        profile: per-call options and the command line go through the same checks and messages."""
        data = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            *parents, leaf = key.split(".")
            node = data
            for part in parents:
                node = node[part]
            if leaf not in node:
                raise ConfigError(f"unknown setting '{key}'")
            node[leaf] = value
        return Config.from_dict(data)

    def with_options(self, **dotted: Any) -> Config:
        """:meth:`replace` for one call's options: a bad value is the caller's input, not the profile's."""
        try:
            return self.replace(**dotted)
        except ConfigError as exc:
            raise InputError(str(exc)) from None

    @property
    def index_home(self) -> Path:
        if self.home:
            return Path(self.home).expanduser() / "indexes"
        env = os.environ.get("CHATQA_HOME")
        return Path(env).expanduser() / "indexes" if env else Path("indexes")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = _SECTIONS.get(key) if cls is Config else None
        kwargs[key] = _build(sub, value or {}, f"{where}.{key}") if sub else value
    return cls(**kwargs)


# Ranges (inclusive; None: open) and choices of the fields that have them; the types come from the annotations.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "generator.context_window": (16, None),
    "generator.effective_window": (0, None),
    "generator.max_new_tokens": (1, None),
    "generator.threads": (1, None),
    "generator.timeout": (0.001, None),
    "retriever.max_seq_tokens": (8, None),
    "retriever.window_stride": (0.01, 1.0),
    "retriever.batch_size": (1, None),
    "chunking.chunk_tokens": (16, None),
    "chunking.overlap_tokens": (0, None),
    "retrieval.top_k": (1, None),
    "retrieval.rrf_k": (1, None),
    "retrieval.ann_threshold": (1, None),
    "retrieval.history_turns": (0, None),
    "mapreduce.map_max_new_tokens": (1, None),
    "mapreduce.reduce_max_new_tokens": (1, None),
    "mapreduce.section_tokens": (16, None),
    "mapreduce.max_map_calls": (1, None),
    "routing.judge_threshold": (0.0, 1.0),
}
_CHOICES: dict[str, tuple[Any, ...]] = {
    "generator.prompt_format": ("chatqa", "chat", "completion"),
    "retriever.pooling": ("max", "mean"),
    "retrieval.method": METHODS,
    "retrieval.index_type": ("flat", "hnsw", "ivf", "auto"),
    "routing.mode": MODES,
    "routing.truncate": (None, "middle"),
    "routing.self_route_decline": ("instruction", "judge"),
}
# The command-line option that sets a field, named beside it in errors so either spelling can be searched.
FLAGS = {
    "routing.mode": "--mode", "retrieval.top_k": "--top-k", "retrieval.method": "--retrieval",
    "routing.truncate": "--truncate", "generator.max_new_tokens": "--max-new-tokens",
    "chunking.chunk_tokens": "--chunk-tokens", "mapreduce.max_map_calls": "--max-map-calls",
}  # fmt: skip


def _name(key: str) -> str:
    return f"{key} ({FLAGS[key]})" if key in FLAGS else key


def _type_ok(value: Any, hint: Any) -> bool:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    origin = typing.get_origin(hint) or hint
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)


def _type_word(hint: Any) -> str:
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping"}
    parts = [words.get(typing.get_origin(a) or a, "null" if a is type(None) else str(a)) for a in
             (typing.get_args(hint) if typing.get_origin(hint) is not None and typing.get_origin(hint) is not dict
              else (hint,))]  # fmt: skip
    return " or ".join(parts)


def validate(config: Config) -> None:
    """Types and ranges of every field, one line naming the field: the only place settings are checked."""
    for section, cls in _SECTIONS.items():
        obj = getattr(config, section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key, value = f"{section}.{f.name}", getattr(obj, f.name)
            if not _type_ok(value, hints[f.name]):
                raise ConfigError(f"{_name(key)} must be {_type_word(hints[f.name])}, got {value!r}")
            if key in _CHOICES and value not in _CHOICES[key]:
                choices = ", ".join(str(c) for c in _CHOICES[key] if c is not None)
                raise ConfigError(f"unknown {f.name} {value!r} for {_name(key)} (choose from {choices})")
            low, high = _RANGES.get(key, (None, None))
            if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
                bound = f"at least {low:g}" if high is None else f"between {low:g} and {high:g}"
                raise ConfigError(f"{_name(key)} must be {bound}, got {value!r}")
    g = config.generator
    if g.max_new_tokens >= g.context_window:
        raise ConfigError(f"the answer budget {_name('generator.max_new_tokens')} = {g.max_new_tokens:,} leaves no "
                          f"room in the context window ({g.context_window:,} tokens)")  # fmt: skip
    if config.chunking.overlap_tokens >= config.chunking.chunk_tokens:
        raise ConfigError("chunking.overlap_tokens must be smaller than chunking.chunk_tokens")
    if g.api_key_env and not API_KEY_ENV.fullmatch(g.api_key_env):
        raise ConfigError(f"generator.api_key_env {g.api_key_env!r} is not an API-key variable: a profile may only "
                          "name variables ending in _API_KEY or starting with CHATQA_")  # fmt: skip


_SECTIONS: dict[str, type] = {
    "generator": GeneratorConfig,
    "retriever": RetrieverConfig,
    "chunking": ChunkingConfig,
    "retrieval": RetrievalConfig,
    "routing": RoutingConfig,
    "mapreduce": MapReduceConfig,
}


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "chatqa" / "profiles"


def profile_dirs() -> list[Path]:
    """Where bare profile names are looked up, first match wins: folders the user named (CHATQA_CONFIGS), the
    user's config folder, then the shipped profiles. Never the working directory: a cloned repository's
    ``configs/default.yaml`` must not replace the shipped default unless it is named by path."""
    dirs = [Path(p).expanduser() for p in os.environ.get("CHATQA_CONFIGS", "").split(os.pathsep) if p]
    return [*dirs, user_config_dir(), REPO_CONFIGS]


def find_profile(name_or_path: str) -> Path:
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path or "/" in name_or_path:
        if not candidate.is_file():
            raise ConfigError(f"profile file not found: {candidate}")
        return candidate
    for folder in profile_dirs():
        path = folder / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(f"no profile named '{name_or_path}' (known: {', '.join(known) or 'none'})")


def load_profile(name_or_path: str = "default") -> Config:
    path = find_profile(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path}: expected a mapping of sections, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    config = Config.from_dict(data)
    config.path = str(path.resolve())
    return config
