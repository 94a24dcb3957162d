"""Short KV prefixes on the default model: recompute them, or save and restore them through the disk store?

Why: map-reduce sections on the default profile (Qwen2.5-Coder-0.5B, effective window 1,024) are at most ~780
prompt tokens, and the disk store used to skip prefixes under 1,024 tokens on the claim that recomputing them is
about as fast as reading a state. This script measures that claim, per prefix length: seconds to evaluate the
prefix from nothing, seconds to take its state and write it to a :class:`~chatqa.kvcache.KVStore` (checksum,
atomic write), seconds to read, verify and install it again, and the entry's bytes. The stored prefix is cut to
a multiple of llama.cpp's micro-batch (``n_ubatch``), so a smaller micro-batch keeps more of a section; the
script also measures prefill speed per micro-batch size, to show what a smaller one costs.
Run: ``python benchmarks/bench_kv_prefix.py [--quick]`` (under the heavy lock, on a quiet box).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

LENGTHS = (64, 128, 256, 512, 768, 1024)
UBATCHES = (64, 128, 256, 512)
MODEL_PROFILE = "default"


def _text_ids(llm: Any, n: int) -> list[int]:
    text = c.novel("pg11").read_text(encoding="utf-8")
    ids = llm.tokenize(text[: 12 * n].encode("utf-8"), add_bos=False)
    assert len(ids) >= n, "the novel's start is shorter than asked"
    return ids[:n]


def _load(n_ubatch: int | None) -> Any:
    from chatqa.config import load_profile
    from chatqa.generation.llamacpp import _llama, llama_settings, usable_cores

    cfg = load_profile(MODEL_PROFILE).generator
    settings = llama_settings(usable_cores(), cfg.context_window)
    if n_ubatch is not None:
        settings["n_ubatch"] = n_ubatch
    return _llama(cfg, **settings), settings


def _prefill(llm: Any, ids: list[int]) -> float:
    llm.reset()
    llm._ctx.kv_cache_clear()
    t0 = time.perf_counter()
    llm.eval(ids)
    return time.perf_counter() - t0


def prefill_speed(lengths: tuple[int, ...], reps: int) -> list[list[Any]]:
    """Prompt tokens per second per micro-batch size (n_batch stays 512): the price of a finer store cut."""
    rows = []
    for ub in UBATCHES:
        llm, _ = _load(ub)
        ids = _text_ids(llm, max(lengths))
        _prefill(llm, ids[:64])  # warm-up: first-touch of the weights
        for n in lengths:
            best = min(_prefill(llm, ids[:n]) for _ in range(reps))
            rows.append([ub, n, round(best, 3), round(n / best, 1)])
            c.log(f"n_ubatch {ub}: {n} tokens {best:.2f}s ({n / best:.0f} tok/s)")
        llm.close()
    return rows


def save_vs_recompute(folder: Path, lengths: tuple[int, ...], reps: int) -> list[list[Any]]:
    """Per prefix length: recompute, save (state + store write) and restore (store read + verify + install)."""
    from chatqa.kvcache import KVStore, load_llama_state, save_llama_state

    llm, settings = _load(None)
    ids = _text_ids(llm, max(lengths))
    _prefill(llm, ids[:64])
    store = KVStore(folder / "kv", max_bytes=8 * 1024**3)
    rows = []
    for n in lengths:
        rec, save, restore, size = [], [], [], 0
        for rep in range(reps):
            rec.append(_prefill(llm, ids[:n]))
            key = store.key({"bench": rep}, ids[:n])
            t0 = time.perf_counter()
            state = save_llama_state(llm)
            store.put(key, ids[:n], state, {"model": "bench"})
            save.append(time.perf_counter() - t0)
            size = store.path(key).stat().st_size
            llm.reset()
            llm._ctx.kv_cache_clear()
            t0 = time.perf_counter()
            entry = store.get(key, ids[:n])
            assert entry is not None and entry.state is not None and load_llama_state(llm, ids[:n], entry.state)
            restore.append(time.perf_counter() - t0)
        r, s, t = (statistics.median(x) for x in (rec, save, restore))
        rows.append([n, round(r, 3), round(s, 4), round(t, 4), size, round(size / n), round(r / (s + t), 1)])
        c.log(f"{n} tokens: recompute {r:.2f}s, save {s:.3f}s, restore {t:.3f}s, {size / 1e6:.1f} MB")
    llm.close()
    return rows


def measure(args: Any, folder: Path) -> dict[str, Any]:
    reps = 1 if args.quick else 3
    lengths = (128, 512) if args.quick else LENGTHS
    store_rows = save_vs_recompute(folder, lengths, reps)
    speed_rows = prefill_speed((256,) if args.quick else (832, 2048), 1 if args.quick else 2)
    return {
        "command": c.user_command(["python", "benchmarks/bench_kv_prefix.py", *sys.argv[1:]]),
        "load_avg_start": c.START_LOAD,
        "tables": [
            {
                "caption": f"Profile {MODEL_PROFILE} (Qwen2.5-Coder-0.5B, llama.cpp as chatqa runs it): a prefix of n "
                "tokens, recomputed vs saved to and restored from the disk store (median of "
                f"{reps}); save + restore is paid once each, recompute on every cold question",
                "columns": [
                    "prefix tokens",
                    "recompute s",
                    "save s",
                    "restore s",
                    "entry bytes",
                    "bytes/token",
                    "recompute / (save + restore)",
                ],
                "rows": store_rows,
            },
            {
                "caption": "Prefill speed per micro-batch size (n_batch 512, best of the repeats)",
                "columns": ["n_ubatch", "prompt tokens", "seconds", "tok/s"],
                "rows": speed_rows,
            },
        ],  # fmt: skip
        "targets": [],
        "notes": [f"load average at start {c.START_LOAD}"],
    }


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, "kv_prefix", "KV prefixes: recompute vs save + restore", {}, measure))
