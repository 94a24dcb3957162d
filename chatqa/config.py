"""One config shape for the library, the CLI and the eval runner.

A profile is a YAML file in ``configs/`` whose sections mirror the dataclasses below. Keeping one shape means
a run folder can store the resolved config and re-create exactly the system that produced it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chatqa.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


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


@dataclass
class MapReduceConfig:
    """Budgets of the map-reduce route (global questions over documents longer than the window)."""

    map_max_new_tokens: int = 96  # each section's notes: short, since every section pays for its own
    reduce_max_new_tokens: int = 192  # each intermediate merge of notes; the final answer uses the answer budget
    section_tokens: int | None = None  # cap on document tokens per map call; None: what the window leaves
    max_map_calls: int | None = None  # refuse documents needing more map calls (--max-map-calls)


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
        return _build(cls, data, "config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **dotted: Any) -> Config:
        """Return a copy with ``section.key`` overrides applied (None values are ignored)."""
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


_SECTIONS: dict[str, type] = {
    "generator": GeneratorConfig,
    "retriever": RetrieverConfig,
    "chunking": ChunkingConfig,
    "retrieval": RetrievalConfig,
    "routing": RoutingConfig,
    "mapreduce": MapReduceConfig,
}


def profile_dirs() -> list[Path]:
    """Where profile names are looked up, first match wins: a user's own folder beats the shipped ones."""
    dirs = [Path(p) for p in os.environ.get("CHATQA_CONFIGS", "").split(os.pathsep) if p]
    return [*dirs, Path("configs"), REPO_CONFIGS]


def find_profile(name_or_path: str) -> Path:
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
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
    data.setdefault("name", path.stem)
    config = Config.from_dict(data)
    config.path = str(path.resolve())
    return config
