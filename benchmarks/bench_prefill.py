"""Prefill speed of a GGUF model through llama.cpp against this machine's compute limit.

Why: a 0.5B model prefilling at 47 tokens/s (seen on a busy box) is far under what 2 cores can do; this script
says where the time goes. It measures (1) the machine's fp32 matmul peak with numpy, (2) the model's FLOPs per
prompt token from its GGUF shapes, so the limit is peak / FLOPs-per-token, and (3) llama.cpp's prefill at a
few prompt lengths under several settings (threads, flash attention, batch sizes). Each setting runs in its
own process so one's memory and threads never touch another's. Self-contained: no chatqa import beyond
resolving an ``embedded:`` model.

    python benchmarks/bench_prefill.py --model embedded:qwen2.5-coder-0.5b --lengths 1024,4096
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BENCH_DATA", REPO.parent / "shared" / "data"))
VARIANTS = {  # name -> llama.cpp context settings
    "shipped": {},  # whatever chatqa's llamacpp backend passes (read from chatqa.generation.llamacpp)
    "threads1": {"n_threads": 1, "n_threads_batch": 1},
    "no_flash": {"flash_attn": False},
    "ubatch256": {"n_batch": 512, "n_ubatch": 256},
    "batch2048": {"n_batch": 2048, "n_ubatch": 2048},
    "logits_all": {"logits_all": True},
}


def matmul_peak(n: int = 2048, reps: int = 8) -> dict[str, float]:
    """Best fp32 GFLOP/s of an n x n matmul on all usable cores, by numpy's BLAS and by torch (oneDNN/MKL use
    AVX-512 where numpy's OpenBLAS build may pick an AVX2 kernel): the larger is the machine's practical limit."""
    import numpy as np

    out: dict[str, float] = {}
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    mats: dict[str, tuple[object, object]] = {"numpy": (a, b)}
    try:
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        mats["torch"] = (torch.from_numpy(a), torch.from_numpy(b))
    except ImportError:
        pass
    for name, (x, y) in mats.items():
        x @ y  # type: ignore[operator]
        best = 0.0
        for _ in range(reps):
            t = time.perf_counter()
            x @ y  # type: ignore[operator]
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
        out[name] = round(best, 1)
    return out


def model_flops(path: str) -> dict[str, float]:
    """FLOPs per prompt token outside attention (2 x weights touched per token), and attention per context
    position, from the GGUF tensor shapes. The output head counts only when every position's logits are kept."""
    from gguf import GGUFReader

    r = GGUFReader(path)
    body = head = 0
    types: dict[str, int] = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + int(t.n_elements)
        if t.name.startswith("blk.") and t.name.endswith(".weight") and len(t.shape) == 2:
            body += int(t.n_elements)
        elif t.name == "output.weight":
            head += int(t.n_elements)
    arch = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")

    def field(key: str) -> int:
        f = r.fields[f"{arch}.{key}"]
        return int(f.parts[f.data[0]][0])

    layers, d = field("block_count"), field("embedding_length")
    return {
        "gflop_per_token_body": 2 * body / 1e9,
        "gflop_per_token_head": 2 * head / 1e9,
        "attn_gflop_per_token_per_ctx": 4 * layers * d / 1e9,  # QK^T and AV over each earlier position
        "weights_by_type_m": {k: round(v / 1e6, 1) for k, v in sorted(types.items())},
    }


def prompt_ids(llm: object, n: int) -> list[int]:
    text = (DATA / "gutenberg" / "pg1342.txt").read_text(encoding="utf-8")
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False)  # type: ignore[attr-defined]
    return ids[5000 : 5000 + n]


def child(model: str, variant: str, lengths: list[int], out: str) -> None:
    import llama_cpp

    sys.path.insert(0, str(REPO))
    from chatqa.generation.llamacpp import llama_settings, usable_cores
    from chatqa.weights import resolve

    path = resolve(model)
    settings = llama_settings(usable_cores(), max(lengths) + 64)
    settings.update(VARIANTS[variant])
    t = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, verbose=False, **settings)
    load_s = time.perf_counter() - t
    rows = []
    for n in lengths:
        ids = prompt_ids(llm, n)
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        s = time.perf_counter() - t
        rows.append({"tokens": n, "seconds": round(s, 2), "tok_s": round(n / s, 1)})
    shown = {k: v for k, v in settings.items() if k != "n_ctx"}
    Path(out).write_text(json.dumps({"variant": variant, "settings": shown, "load_s": round(load_s, 2), "rows": rows}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:qwen2.5-coder-0.5b")
    ap.add_argument("--lengths", default="1024,4096")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "prefill.json"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.child:
        child(args.model, args.child[0], lengths, args.child[1])
        return
    sys.path.insert(0, str(REPO))
    from chatqa.weights import resolve

    load_start = os.getloadavg()
    peaks = matmul_peak()
    peak = max(peaks.values())
    flops = model_flops(resolve(args.model))
    print(f"matmul peak {peaks} GFLOP/s fp32; model {flops}", flush=True)
    results = []
    for variant in args.variants.split(","):
        tmp = Path(args.out).with_suffix(f".{variant}.tmp")
        cmd = [sys.executable, __file__, "--model", args.model, "--lengths", args.lengths, "--child", variant, str(tmp)]
        subprocess.run(cmd, check=True)
        res = json.loads(tmp.read_text())
        tmp.unlink()
        for row in res["rows"]:
            per_token = flops["gflop_per_token_body"] + flops["attn_gflop_per_token_per_ctx"] * row["tokens"] / 2
            if res["settings"].get("logits_all"):
                per_token += flops["gflop_per_token_head"]
            row["limit_tok_s"] = round(peak / per_token, 1)
            row["of_limit"] = round(row["tok_s"] / row["limit_tok_s"], 3)
        results.append(res)
        print(json.dumps(res), flush=True)
    report = {
        "command": "python benchmarks/bench_prefill.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "usable": len(os.sched_getaffinity(0))},
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
        "matmul_peak_gflops": peaks,
        "model": args.model,
        "flops": flops,
        "results": results,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
