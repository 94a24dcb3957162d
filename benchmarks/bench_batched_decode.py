"""Batched decoding on the default model: N map calls decoded together in one llama_decode per token.

Why: the map-reduce route asks every ~770-token section of a book its question, one llama.cpp call after
another. With the sections' KV states restored (a second question) each map call costs ~1.3-1.5 s, mostly
decoding ~42 note tokens one sequence at a time, and single-sequence decode on 2 cores is bound by reading the
weights from memory: one pass over the weights could serve several sequences. Before the map stage is
redesigned around that, this script measures it with llama-cpp-python's C API, on the default profile's GGUF
(Qwen2.5-Coder-0.5B-Instruct Q4_K_M) with chatqa's context settings (``llama_settings``: threads, n_batch,
flash attention, n_ctx) plus ``n_seq_max`` = the largest N (separate KV streams per sequence, llama.cpp's
default):

1. alone (the reference): per section, a cold prefill of the map prompt's section prefix, its sequence state
   taken with ``llama_state_seq_get_data``, the question tail read, then greedy decoding one token per call;
2. batched, for N in 1, 2, 4, 8, 16: the N sections' states restored into sequences 0..N-1 with
   ``llama_state_seq_set_data`` (the warm case of a second question), their question tails read together, then
   one ``llama_decode`` per step carrying one token of every sequence. Every sequence's greedy tokens are
   compared with its reference: batched float math may differ, and any mismatch is counted, not hidden;
3. controls: the same N=1 loop in chatqa's own context (``n_seq_max`` 1), and chatqa's
   ``LlamaCppGenerator.generate`` on the first prompts, which must give the reference's text.

Sequences decode a fixed number of steps even past an end-of-generation token, so every N does the same work;
answers are compared both up to the reference's end token and over all steps.
Run: ``flock /tmp/chatqa-heavy.lock python benchmarks/bench_batched_decode.py [--quick]``.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

MODEL_PROFILE = "default"
NOVEL = "pg11"
QUESTION = "Summarise the whole book."
SECTION_TOKENS = 770  # what map-reduce packs into one section on the default profile (effective window 1,024)
WIDTHS = (1, 2, 4, 8, 16)
STEPS = 48  # decode calls per run: a map note is ~42 tokens
CHATQA_CHECKS = 2  # prompts also answered through chatqa's generator and in chatqa's own context


@dataclass
class MapPrompt:
    """One section's map prompt: ``cut`` tokens of shared section prefix, then the question tail."""

    index: int
    ids: list[int]
    cut: int
    text: str
    prefix: str


@dataclass
class Reference:
    """A prompt decoded alone from a cold prefill: the tokens every batched run must reproduce."""

    tokens: list[int]
    answer_len: int  # tokens before the first end-of-generation token (the note chatqa would keep)
    prefill_s: float  # the section prefix, cold
    save_s: float  # llama_state_seq_get_data
    state: bytes = field(repr=False)
    tail_s: float = 0.0
    decode_s: float = 0.0
    step_ms: float = 0.0  # median decode step


# -- the low-level loop ----------------------------------------------------------------------------------
class Context:
    """One llama.cpp context driven through the C API: rows of (token, position, sequence, wants logits) in,
    the greedy next token of every row that wanted logits out."""

    def __init__(self, ctx: Any, n_batch: int, n_vocab: int) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.ctx = ctx
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.n_batch = n_batch
        self.n_vocab = n_vocab
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.mem, True)

    def run(self, rows: Sequence[tuple[int, int, int, bool]]) -> list[int]:
        import numpy as np

        assert 0 < len(rows) <= self.n_batch
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(rows)
        rc = self.lib.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        out = []
        for i, row in enumerate(rows):
            if row[3]:
                logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
                out.append(int(logits.argmax()))
        return out

    def read(self, ids: Sequence[int], begin: int, end: int, cut: int, seq: int) -> int:
        """Evaluate ``ids[begin:end]`` into ``seq`` in chatqa's batch schedule (every multiple of n_batch and
        the prefix cut are boundaries: ``LlamaCppGenerator._cuts``); returns the greedy token after ``end``."""
        pos, token = begin, -1
        while pos < end:
            nxt = min(end, (pos // self.n_batch + 1) * self.n_batch)
            if pos < cut < nxt:
                nxt = cut
            rows = [(ids[p], p, seq, p == nxt - 1) for p in range(pos, nxt)]
            token = self.run(rows)[0]
            pos = nxt
        return token

    def read_tails(self, prompts: Sequence[MapPrompt]) -> list[int]:
        """The question tails of all sequences (prompt i in sequence i), whole tails packed into as few
        llama_decode calls as n_batch allows; returns each sequence's first answer token."""
        first: list[int] = []
        rows: list[tuple[int, int, int, bool]] = []
        for seq, p in enumerate(prompts):
            tail = [(p.ids[q], q, seq, q == len(p.ids) - 1) for q in range(p.cut, len(p.ids))]
            assert len(tail) <= self.n_batch, "a question tail longer than n_batch"
            if len(rows) + len(tail) > self.n_batch:
                first += self.run(rows)
                rows = []
            rows += tail
        return first + self.run(rows)

    def decode(self, starts: Sequence[tuple[int, int]], steps: int) -> tuple[list[list[int]], list[float]]:
        """Greedy decoding of every sequence together: ``starts[seq]`` = (first token, its position); one
        llama_decode per step with one token per sequence. Returns each sequence's tokens (first included) and
        the seconds of every step (the first step of a new batch shape also pays for llama.cpp's graph setup)."""
        out = [[token] for token, _ in starts]
        times = []
        for step in range(steps):
            t0 = time.perf_counter()
            rows = [(out[seq][-1], pos + step, seq, True) for seq, (_, pos) in enumerate(starts)]
            for seq, token in enumerate(self.run(rows)):
                out[seq].append(token)
            times.append(time.perf_counter() - t0)
        return out, times

    def save(self, seq: int) -> bytes:
        size = self.lib.llama_state_seq_get_size(self.ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        written = self.lib.llama_state_seq_get_data(self.ctx, buf, size, seq)
        assert written == size, f"llama_state_seq_get_data wrote {written} of {size} bytes"
        return bytes(buf)

    def restore(self, state: bytes, seq: int) -> bool:
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        return self.lib.llama_state_seq_set_data(self.ctx, buf, len(state), seq) > 0


# -- prompts ----------------------------------------------------------------------------------------------
def _sections(count: int, n_tokens: int, tokens: Any) -> list[str]:
    """Consecutive runs of whole paragraphs of the novel, each at most ``n_tokens`` generator tokens."""
    paragraphs = [p.strip() for p in c.novel(NOVEL).read_text(encoding="utf-8").split("\n\n") if p.strip()]
    out, current = [], []
    for para in paragraphs:
        if current and tokens.count("\n\n".join([*current, para])) > n_tokens:
            out.append("\n\n".join(current))
            current = []
            if len(out) == count:
                return out
        current.append(para)
    raise SystemExit(f"{NOVEL} has fewer than {count} sections of {n_tokens} tokens")


def map_prompts(generator: Any, count: int, n_tokens: int) -> list[MapPrompt]:
    """chatqa's own map prompts (chat template, section first, instruction after) and prefix cut."""
    from chatqa.generation.llamacpp import KV_SAFETY_TOKENS, _matching
    from chatqa.prompting import MapReducePrompts

    prompts = MapReducePrompts("chat", generator.render_chat)
    out = []
    for i, section in enumerate(_sections(count, n_tokens, generator.tokenizer)):
        prompt = prompts.map(section, QUESTION)
        ids = generator.tokenizer.encode(prompt.text, add_bos=True)
        prefix = prompt.text[: prompt.context_chars]
        cut = _matching(generator.tokenizer.encode(prefix, add_bos=True), ids) - KV_SAFETY_TOKENS
        out.append(MapPrompt(i, ids, cut, prompt.text, prefix))
    return out


def _answer_len(tokens: Sequence[int], eog: Any) -> int:
    return next((i for i, t in enumerate(tokens) if eog(t)), len(tokens))


def _mismatch(tokens: Sequence[int], ref: Reference) -> tuple[bool, bool, int | None]:
    """(answer differs, any step differs, first differing position)."""
    first = next((i for i, (a, b) in enumerate(zip(tokens, ref.tokens, strict=True)) if a != b), None)
    return first is not None and first < ref.answer_len + 1, first is not None, first


# -- the measurements ----------------------------------------------------------------------------------
def references(ctx: Context, prompts: Sequence[MapPrompt], steps: int, eog: Any) -> list[Reference]:
    out = []
    for p in prompts:
        ctx.clear()
        t0 = time.perf_counter()
        ctx.read(p.ids, 0, p.cut, p.cut, 0)
        t1 = time.perf_counter()
        state = ctx.save(0)
        t2 = time.perf_counter()
        first = ctx.read(p.ids, p.cut, len(p.ids), p.cut, 0)
        t3 = time.perf_counter()
        decoded, times = ctx.decode([(first, len(p.ids))], steps)
        t4 = time.perf_counter()
        tokens = decoded[0]
        step_ms = 1000 * statistics.median(times)
        ref = Reference(tokens, _answer_len(tokens, eog), t1 - t0, t2 - t1, state, t3 - t2, t4 - t3, step_ms)
        out.append(ref)
        c.log(f"section {p.index}: {p.cut} + {len(p.ids) - p.cut} tokens, prefill {ref.prefill_s:.2f}s, "
              f"decode {ref.decode_s:.2f}s, answer {ref.answer_len} tokens")  # fmt: skip
    return out


def batched(ctx: Context, prompts: Sequence[MapPrompt], refs: Sequence[Reference], steps: int) -> dict[str, Any]:
    """One warm run of N = len(prompts) sequences: restore, read the tails together, decode together."""
    ctx.clear()
    t0 = time.perf_counter()
    for seq, ref in enumerate(refs):
        assert ctx.restore(ref.state, seq), f"llama_state_seq_set_data failed for sequence {seq}"
    t1 = time.perf_counter()
    first = ctx.read_tails(prompts)
    t2 = time.perf_counter()
    tokens, times = ctx.decode([(tok, len(p.ids)) for tok, p in zip(first, prompts, strict=True)], steps)
    t3 = time.perf_counter()
    checks = [_mismatch(t, r) for t, r in zip(tokens, refs, strict=True)]
    return {
        "restore_s": t1 - t0,
        "tail_s": t2 - t1,
        "decode_s": t3 - t2,
        "step_ms_median": 1000 * statistics.median(times),
        "step_ms_first": 1000 * times[0],
        "answer_mismatch": sum(a for a, _, _ in checks),
        "step_mismatch": sum(s for _, s, _ in checks),
        "first_diff": [f for _, _, f in checks],
        "tokens": tokens,  # kept out of the JSON (see _differences)
    }


def chatqa_check(generator: Any, prompts: Sequence[MapPrompt], refs: Sequence[Reference], steps: int) -> list[bool]:
    """chatqa's generate on the same prompts (greedy, no stop strings): the reference's note, token for token?"""
    out = []
    for p, ref in zip(prompts, refs, strict=True):
        gen = generator.generate(p.text, steps + 1, prefix=p.prefix)
        expected = generator.tokenizer.decode(ref.tokens[: ref.answer_len]).strip()
        out.append(gen.text == expected)
        c.log(f"chatqa generate, section {p.index}: {'same' if out[-1] else 'DIFFERENT'} note")
    return out


def measure(args: Any, folder: Path) -> dict[str, Any]:
    import llama_cpp

    from chatqa.config import load_profile
    from chatqa.generation.llamacpp import LlamaCppGenerator

    widths = (1, 2, 4) if args.quick else WIDTHS
    steps, section_tokens, reps = (16, 256, 1) if args.quick else (STEPS, SECTION_TOKENS, 2)
    generator = LlamaCppGenerator(load_profile(MODEL_PROFILE).generator)
    llm = generator.llm
    prompts = map_prompts(generator, max(widths), section_tokens)
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    eog = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))  # noqa: E731 - <|im_end|>, <|endoftext|>
    n_vocab = llm.n_vocab()
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)  # chatqa's settings, as set
    params.n_seq_max = max(widths)
    raw = llama_cpp.llama_init_from_model(llm._model.model, params)
    if not raw:
        raise SystemExit(f"llama.cpp could not create a context with n_seq_max={max(widths)}")
    multi = Context(raw, llm.n_batch, n_vocab)
    try:
        settings = {
            "n_ctx": llama_cpp.llama_n_ctx(raw),
            "n_ctx_seq": llama_cpp.llama_n_ctx_seq(raw),
            "n_seq_max": llama_cpp.llama_n_seq_max(raw),
            "n_batch": llm.n_batch,
            "n_ubatch": params.n_ubatch,
            "n_threads": params.n_threads,
            "n_threads_batch": params.n_threads_batch,
            "flash_attn": params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "kv_unified": bool(params.kv_unified),
        }
        c.log(f"context: {settings}")
        multi.read(prompts[0].ids, 0, 64, 64, 0)  # warm-up: first touch of the weights
        refs = references(multi, prompts, steps, eog)
        runs: dict[int, list[dict[str, Any]]] = {}
        for rep in range(reps):
            for n in widths:
                run = batched(multi, prompts[:n], refs[:n], steps)
                runs.setdefault(n, []).append(run)
                tps = n * steps / run["decode_s"]
                c.log(f"rep {rep} N={n}: restore {run['restore_s']:.3f}s, tails {run['tail_s']:.2f}s, "
                      f"decode {run['decode_s']:.2f}s ({tps:.1f} tok/s), differing: "
                      f"{run['answer_mismatch']}/{n} answers, {run['step_mismatch']}/{n} runs")  # fmt: skip
        k = min(CHATQA_CHECKS, len(prompts))
        same_text = chatqa_check(generator, prompts[:k], refs[:k], steps)
        own = Context(llm._ctx.ctx, llm.n_batch, n_vocab)  # chatqa's own context: n_seq_max 1
        try:
            control = references(own, prompts[:k], steps, eog)
            # Can a state move between contexts of different n_seq_max (a store written by today's generator)?
            own.clear()
            multi.clear()
            portable = {
                "n_seq_max 1 -> n_seq_max N": multi.restore(control[0].state, 1),
                "n_seq_max N -> n_seq_max 1": own.restore(refs[0].state, 0),
            }
        finally:
            own.close()
    finally:
        multi.close()
        llama_cpp.llama_free(raw)
    diffs = _differences(runs, refs, lambda ids: generator.tokenizer.decode(ids[: _answer_len(ids, eog)]))
    generator.close()
    result = _report(settings, prompts, refs, runs, control, same_text, portable, steps)
    result["notes"].insert(1, "sequences whose batched tokens are the same for every N that is a multiple of 4: "
                           f"{diffs['batched_tokens_same_for_every_n_multiple_of_4']}")  # fmt: skip
    return {**result, **diffs}


def _differences(runs: dict[int, list[dict[str, Any]]], refs: Sequence[Reference], decode: Any) -> dict[str, Any]:
    """What the differing notes look like, and whether a sequence's batched tokens depend on N.

    llama.cpp's CPU matmul for repacked weights (ggml-cpu repack.cpp) takes a gemm kernel over the largest
    multiple of 4 rows and a gemv kernel for the rest: N < 4 should be bit-identical to N=1, N >= 4 may not."""
    variants: dict[int, set[tuple[int, ...]]] = {}
    for n, reps in runs.items():
        for run in reps:
            for seq, tokens in enumerate(run.pop("tokens")):
                if n >= 4 and n % 4 == 0:
                    variants.setdefault(seq, set()).add(tuple(tokens))
            last = run
    notes = []
    for seq, first in enumerate(last["first_diff"]):
        if first is not None:
            variants_seq = sorted(variants.get(seq, ()))
            ref = refs[seq]
            notes.append({"section": seq, "first_diff": first, "alone": decode(ref.tokens).strip(),
                          "batched": [decode(list(v)).strip() for v in variants_seq]})  # fmt: skip
    same = sum(len(v) == 1 for v in variants.values())
    return {"differing_notes_largest_n": notes,
            "batched_tokens_same_for_every_n_multiple_of_4": f"{same}/{len(variants)}"}  # fmt: skip


def _report(settings: dict[str, Any], prompts: Sequence[MapPrompt], refs: Sequence[Reference],
            runs: dict[int, list[dict[str, Any]]], control: Sequence[Reference], same_text: list[bool],
            portable: dict[str, bool], steps: int) -> dict[str, Any]:  # fmt: skip
    med = statistics.median
    alone_decode = med(r.decode_s for r in refs)
    rows, raw = [], {}
    for n, reps in runs.items():
        best = min(reps, key=lambda r: r["decode_s"])  # the least disturbed repeat; all are in the JSON
        per_seq = (best["restore_s"] + best["tail_s"] + best["decode_s"]) / n
        decode_tps = n * steps / best["decode_s"]
        rows.append([n, round(best["restore_s"], 4), round(best["tail_s"], 3), round(best["decode_s"], 3),
                     round(best["step_ms_median"], 1), round(decode_tps, 1),
                     round(decode_tps / (steps / alone_decode), 2), round(per_seq, 3),
                     f"{max(r['answer_mismatch'] for r in reps)}/{n}",
                     f"{max(r['step_mismatch'] for r in reps)}/{n}"])  # fmt: skip
        raw[str(n)] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in reps]
    state_bytes = med(len(r.state) for r in refs)
    cut = med(p.cut for p in prompts)
    tail = med(len(p.ids) - p.cut for p in prompts)
    ref_rows = [[p.index, p.cut, len(p.ids) - p.cut, round(r.prefill_s, 3), round(r.save_s, 4), len(r.state),
                 round(r.tail_s, 3), round(r.decode_s, 3), round(r.step_ms, 1), r.answer_len]
                for p, r in zip(prompts, refs, strict=True)]  # fmt: skip
    restore_one = med(x["restore_s"] / int(n) for n, xs in runs.items() for x in xs)  # per section
    ctl = [[p.index, round(x.prefill_s, 3), round(x.tail_s, 3), round(x.decode_s, 3), round(x.step_ms, 1),
            x.tokens == r.tokens, same_text[i]]
           for i, (p, x, r) in enumerate(zip(prompts, control, refs, strict=False))]  # fmt: skip
    return {
        "command": c.user_command(["python", "benchmarks/bench_batched_decode.py", *sys.argv[1:]]),
        "settings": settings,
        "model_profile": MODEL_PROFILE,
        "question": QUESTION,
        "novel": NOVEL,
        "steps": steps,
        "runs": raw,
        "tables": [
            {
                "caption": f"Warm map calls decoded together (profile {MODEL_PROFILE}, Qwen2.5-Coder-0.5B Q4_K_M, "
                f"chatqa's context settings with n_seq_max {settings['n_seq_max']}): N sections of {NOVEL} "
                f"(median {cut:.0f} prefix + {tail:.0f} question tokens) restored with llama_state_seq_set_data, "
                f"tails read together, {steps} decode steps of one token per sequence; best decode of "
                f"{len(next(iter(runs.values())))} repeats. Speed-up = decode tok/s over the sections decoded "
                f"alone (median {steps / alone_decode:.1f} tok/s); mismatches vs each section decoded alone",
                "columns": [
                    "N",
                    "restore s",
                    "tails s",
                    "decode s",
                    "ms/step (median)",
                    "decode tok/s",
                    "speed-up",
                    "s per section (warm)",
                    "answers differing",
                    "steps differing",
                ],
                "rows": rows,
            },
            {
                "caption": "Each section alone, cold (the reference): section prefix prefill, state save "
                "(llama_state_seq_get_data), question tail, decode",
                "columns": [
                    "section",
                    "prefix tokens",
                    "tail tokens",
                    "prefill s",
                    "save s",
                    "state bytes",
                    "tail s",
                    "decode s",
                    "ms/step (median)",
                    "answer tokens",
                ],
                "rows": ref_rows,
            },
            {
                "caption": "Controls in chatqa's own context (n_seq_max 1): the same section alone, cold, and "
                "chatqa's LlamaCppGenerator.generate on the same prompt (greedy, no stop strings)",
                "columns": [
                    "section",
                    "prefill s",
                    "tail s",
                    "decode s",
                    "ms/step (median)",
                    "same tokens as reference",
                    "chatqa generate: same note",
                ],
                "rows": ctl,
            },
        ],  # fmt: skip
        "targets": [],
        "notes": [
            f"restoring a section's state (median {state_bytes / 1e6:.1f} MB, in memory) took "
            f"{1000 * restore_one:.1f} ms against {med(r.prefill_s for r in refs):.2f} s to prefill its "
            f"{cut:.0f} tokens cold",
            *(
                f"a sequence state taken in a context of {k} loads: {'yes' if ok else 'no'}"
                for k, ok in portable.items()
            ),  # fmt: skip
            f"load average at start {[round(x, 2) for x in c.START_LOAD]}",
        ],
    }


if __name__ == "__main__":
    raise SystemExit(c.main(__doc__, "batched_decode", "Batched decoding of map calls", {}, measure))
