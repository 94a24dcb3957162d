"""What ``chatqa info`` reports: the resolved profile, model files, windows, and where things are stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatqa import __version__
from chatqa.config import load_profile
from chatqa.weights import cache_dir


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_indexes(home: Path) -> list[str]:
    rows = []
    for folder in sorted(home.glob("*/manifest.json")):
        try:
            m = json.loads(folder.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        docs = ", ".join(d["name"] for d in m.get("documents", []))
        stats = m.get("stats", {})
        mb = _size(folder.parent) / 1e6
        rows.append(f"{folder.parent.name}: {docs} ({stats.get('n_chunks', '?')} chunks, {mb:.1f} MB)")
    return rows


def collect(profile: str) -> dict[str, Any]:
    cfg = load_profile(profile)
    g, r = cfg.generator, cfg.retriever
    home = cfg.index_home
    return {
        "chatqa": __version__,
        "profile": f"{cfg.name} ({cfg.path})",
        "generator": f"{g.backend}: {g.model} [{g.prompt_format} prompt]",
        "context_window": g.context_window,
        "effective_window": "not calibrated (uses context_window)"
        if g.effective_window is None
        else g.effective_window,
        "retriever": f"{r.model} (pooling {r.pooling})",
        "chunking": f"{cfg.chunking.chunk_tokens} tokens, overlap {cfg.chunking.overlap_tokens}",
        "retrieval": f"{cfg.retrieval.method}, top-k {cfg.retrieval.top_k}",
        "routing": cfg.routing.mode,
        "index_dir": str(home.resolve()),
        "model_cache": str(cache_dir()),
        "indexes": list_indexes(home) if home.is_dir() else [],
    }
