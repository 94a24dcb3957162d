"""GGUF models through llama.cpp: the CPU path.

Greedy decoding is written out (not ``create_completion``) so prefill and decode are timed apart and the
prompt is tokenized exactly once. llama-cpp-python keeps the last prompt's KV state and reuses its longest
common prefix, so a second question on the same document only pays for the new tokens. With a
:class:`~chatqa.kvcache.KVStore` attached (``kv_store``) and the prompt's shared ``prefix`` given, document
prefixes (a map-reduce section, a whole document) are also saved to disk and restored in a later process
instead of being recomputed. Every read of a prompt follows one batch schedule (:meth:`LlamaCppGenerator._cuts`),
so reuse never changes an output token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from chatqa.config import GeneratorConfig
from chatqa.errors import ModelLoadError
from chatqa.generation import Generation, Generator, StopScanner, WordProbabilities, word_token_ids
from chatqa.kvcache import KVStore, load_llama_state, save_llama_state
from chatqa.weights import resolve

# Shorter shared prefixes are not stored. Not a speed threshold: on Qwen2.5-0.5B (2 cores) recomputing 64 tokens
# took 0.38 s against 15 ms to save and restore their state (benchmarks/results/kv_prefix.json); below 64 a
# recompute costs too little to be worth a file.
KV_MIN_TOKENS = 64
KV_SAFETY_TOKENS = 2  # the last prefix tokens may merge with the question's first ones when tokenized together
ROPE_TYPES = {"none": 0, "linear": 1, "yarn": 2}


def _llama(config: GeneratorConfig, **kwargs: object):  # noqa: ANN202 - llama_cpp.Llama
    import llama_cpp

    from chatqa.progress import quiet_llama

    quiet_llama()
    path = resolve(config.model)
    if not os.path.isfile(path):
        raise ModelLoadError(f"GGUF file not found: {path}")
    try:
        return llama_cpp.Llama(model_path=path, verbose=False, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from None


class LlamaTokenizer:
    """The GGUF vocabulary alone (vocab_only): loads in well under a second, enough for chunking."""

    def __init__(self, config: GeneratorConfig, llm: object | None = None) -> None:
        self.llm = llm or _llama(config, vocab_only=True)
        self.id = f"gguf:{os.path.basename(resolve(config.model))}"
        self._bos_text = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "ignore")

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        if add_bos and self._bos_text and text.startswith(self._bos_text):
            add_bos = False  # chat templates already write the BOS text
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def decode(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", "replace")

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def render_chat(self, messages: list[dict[str, str]]) -> str | None:
        """The GGUF's own chat template, or None: one renderer for the llamacpp and openai backends, so a
        profile's prompt is the same text whichever of the two serves the model."""
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def special(token: int) -> str:
            return self.llm.detokenize([token], special=True).decode("utf-8", "ignore")

        eos, bos = special(self.llm.token_eos()), special(self.llm.token_bos())
        return Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=messages).prompt


def rope_kwargs(rope: dict | None) -> dict[str, object]:
    """Map a profile's RoPE scaling (linear PI, YaRN) onto llama.cpp's context parameters."""
    if not rope:
        return {}
    kind = rope.get("type", "linear")
    factor = float(rope.get("factor", 1.0))
    if kind == "dynamic":
        raise ModelLoadError("llama.cpp has no dynamic NTK scaling; use linear or yarn, or the hf backend")
    if kind not in ROPE_TYPES:
        raise ModelLoadError(f"unknown rope type '{kind}' (linear, yarn, dynamic)")
    out: dict[str, object] = {"rope_scaling_type": ROPE_TYPES[kind], "rope_freq_scale": 1.0 / factor}
    if kind == "yarn":
        out["yarn_orig_ctx"] = int(rope.get("original_context", 0))
    return out


def usable_cores() -> int:
    """Cores this process may run on: a container or ``taskset`` can allow fewer than ``os.cpu_count()``, and
    llama.cpp threads beyond them wait for a core (decode slows down several times instead of speeding up)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def llama_settings(threads: int, n_ctx: int) -> dict[str, object]:
    """The context settings chatqa runs llama.cpp with; benchmarks/bench_prefill.py measures the alternatives.

    Measured on Qwen2.5-Coder-0.5B, 2 cores, a quiet box (benchmarks/results/prefill.json, 2026-12-02): all
    usable cores (1.8x one thread at 1K), flash attention (+5% at 1K, +2% at 4K), a 512-token batch (2048 was no
    faster; a 256-token micro-batch was +6% at 4K but -5% at 1K, where the default's prompts sit), and logits for
    the last position only: ``logits_all`` computes the 151,936-entry output head for every prompt token and cut
    prefill to 59% at 1K (155 tok/s against 264). chatqa never set it: the 47 tok/s first reported for this
    model came from a busy box (two heavy jobs on 2 cores), not from a setting."""
    return {
        "n_ctx": n_ctx,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_batch": 512,
        "flash_attn": True,
    }


def _matching(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two token sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaCppGenerator(Generator):
    kv_store: KVStore | None = None  # set by load_generator(state_dir=); None keeps prefixes in memory only
    kv_event: dict[str, object] | None = None  # what the store did on the last call (hit/miss, sizes, seconds)

    def __init__(self, config: GeneratorConfig, tokenizer: LlamaTokenizer | None = None) -> None:
        self.config = config
        self._path = resolve(config.model)
        settings = llama_settings(config.threads or usable_cores(), config.context_window)
        self.llm = _llama(config, **settings, **rope_kwargs(config.rope))
        self.tokenizer = LlamaTokenizer(config, self.llm)
        # A state restored from disk is exact for full-attention models (SmolLM2/Llama: greedy answers match a
        # cold run), but not for sliding-window ones: on Gemma 3 a restored prefix changed the next answer
        # (tests/test_kvcache.py). Those keep the in-memory reuse only, which stays exact.
        self.disk_state_exact = not any(k.endswith(".attention.sliding_window") for k in self.llm.metadata)
        self._held_cut = 0  # the prefix cut the held state was read with (see _cuts)
        self._held_prompt = 0  # prompt tokens of the held state; the tokens after them were generated

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        rendered = self.tokenizer.render_chat(messages)
        return super().render_chat(messages) if rendered is None else rendered

    def generate(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
        prefix: str | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
    ) -> Generation:
        ids = self.tokenizer.encode(prompt, add_bos=True)
        self.check_fits(len(ids), max_new_tokens, self.llm.n_ctx())
        start = time.perf_counter()  # prefill includes restoring or saving a disk state
        cached = self._read(ids, prefix, on_prefill)
        scanner = StopScanner(stop, on_text)
        out: list[int] = []
        text, finish = "", "length"
        first = start
        eog = self.llm._model.token_is_eog if hasattr(self.llm._model, "token_is_eog") else None
        for token in self.llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if not out and first == start:
                first = time.perf_counter()
            if (eog and eog(token)) or token == self.llm.token_eos():
                finish = "eos"
                break
            out.append(token)
            text = self.tokenizer.decode(out)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            final = scanner.feed(text)
            if final is not None:
                text, finish = final, "stop"
                break
            if len(out) >= max_new_tokens:
                break
        if finish != "stop":
            text = scanner.finish(text)
        end = time.perf_counter()
        return Generation(text.strip(), len(ids), len(out), first - start, end - first, finish, cached)

    def word_probabilities(self, prompt: str, words: Sequence[str]) -> WordProbabilities:
        """Read the prompt as :meth:`generate` does (same batches, same reuse), then the last position's logits:
        each word's probability is the softmax mass of its single-token spellings."""
        ids = self.tokenizer.encode(prompt, add_bos=True)
        self.check_fits(len(ids), 1, self.llm.n_ctx())
        start = time.perf_counter()
        cached = self._read(ids, None, None)
        n_vocab = self.llm.n_vocab()
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(n_vocab,)).astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        ids_of = [word_token_ids(self.tokenizer.encode, w, self.name) for w in words]
        out = [float(sum(probs[i] for i in word_ids)) for word_ids in ids_of]
        return WordProbabilities(out, len(ids), time.perf_counter() - start, cached)

    def _read(self, ids: list[int], prefix: str | None, on_prefill: Callable[[int, int], None] | None) -> int:
        """Hold the whole prompt's KV state, reusing what is held or stored; returns the tokens not computed.
        At least the last prompt token is always evaluated (:meth:`_align_reuse` never keeps it), so its logits
        are those of this prompt."""
        cut = self._prefix_cut(ids, prefix)
        cached = self._align_reuse(ids, cut)
        self.kv_event = None
        self._held_prompt = 0  # until this prompt is read: a failed read leaves nothing reusable behind
        store = self.kv_store
        if cut >= KV_MIN_TOKENS and store is not None and store.enabled and self.disk_state_exact and cached < cut:
            cached = self._prefix_from_store(ids, cut, on_prefill)
        self._prefill(ids, cut, on_prefill)
        self._held_cut, self._held_prompt = cut, len(ids)
        return cached

    def _prefix_cut(self, ids: list[int], prefix: str | None) -> int:
        """Where the prompt's shared prefix ends in its tokens (0: no prefix): a batch boundary of every read of
        this prompt, so that the prefix's KV state is the same whether it was computed cold, restored from disk
        or kept in memory. Its last :data:`KV_SAFETY_TOKENS` tokens are left out: they may tokenize differently
        where the prefix meets the question."""
        if not prefix:
            return 0
        n = _matching(self.tokenizer.encode(prefix, add_bos=True), ids)
        return max(0, min(n - KV_SAFETY_TOKENS, len(ids) - 1))

    def _cuts(self, begin: int, end: int, cut: int) -> list[int]:
        """The batch ends of a read of ``[begin, end)``: every multiple of ``n_batch``, the prefix ``cut``, ``end``.

        llama.cpp's numbers depend on how a prompt is cut into batches (measured: an 8K-token document gave a
        different second answer when a reused prefix shifted the later boundaries). Every read of a prompt
        follows this one schedule, from the start or from any of its boundaries, so a reused prefix (in memory
        or from disk) leaves exactly the batches of a cold read: reuse is invisible in the output. The prefix
        boundary lets a state end where the prefix ends, not at the multiple of ``n_batch`` below it (a 780-token
        map section would keep 512)."""
        step, out, pos = self.llm.n_batch, [], begin
        while pos < end:
            nxt = min(end, (pos // step + 1) * step)
            if pos < cut < nxt:
                nxt = cut
            out.append(nxt)
            pos = nxt
        return out

    def _align_reuse(self, ids: list[int], cut: int) -> int:
        """Keep only as much of the held KV state as a cold read of this prompt would have computed in the same
        batches (see :meth:`_cuts`); returns the tokens kept.

        The held state was read with its own prefix cut: a position is safe to reuse when it is a boundary of
        the new prompt's schedule and both schedules have the same boundaries before it (the multiples of
        ``n_batch``, and the same prefix cut or none). The answer the held state generated (one token per call)
        is never reused."""
        common = min(self._common_prefix(ids), self._held_prompt)
        step = self.llm.n_batch
        old = self._held_cut if self._held_cut % step else 0  # a cut on a multiple of n_batch adds no boundary
        new = cut if cut % step else 0

        def same_before(p: int) -> bool:
            return (old if 0 < old <= p else 0) == (new if 0 < new <= p else 0)

        candidates = [*range(common - common % step, 0, -step), *([new] if 0 < new <= common else [])]
        aligned = max((p for p in candidates if same_before(p)), default=0)
        if aligned < self.llm.n_tokens:
            self.llm.n_tokens = aligned  # llama-cpp-python then matches at most this much and recomputes the rest
        return aligned

    def _prefill(self, ids: list[int], cut: int, on_prefill: Callable[[int, int], None] | None) -> None:
        """Read the prompt in the batches of :meth:`_cuts`, reporting each when asked (a terminal's progress
        bar and ETA).

        ``Llama.generate`` would read the rest itself, but in ``n_batch`` pieces from wherever the held prefix
        ends, which is not the schedule after a prefix cut. Read here, the whole prompt is held and ``generate``
        samples from it at once: nothing is evaluated twice (tests/generation/test_llamacpp_prefill.py)."""
        held = self._held_prefix(ids)
        if held >= len(ids):  # all of it is held: generate replays one token, nothing to read
            return
        report = None
        if on_prefill is not None:
            base = 0 if self.kv_event is not None and self.kv_event.get("event") == "miss" else held
            report = lambda pos: on_prefill(pos - base, len(ids) - base)  # noqa: E731
        self._eval_batches(ids, held, len(ids), cut, report)

    def _eval_batches(self, ids: list[int], begin: int, end: int, cut: int,
                      report: Callable[[int], None] | None) -> None:  # fmt: skip
        """Evaluate ``ids[begin:end]`` after the first ``begin`` held tokens, one batch of :meth:`_cuts` per call."""
        self.llm.n_tokens = begin  # eval() drops the KV cells past it
        if report is not None:
            report(begin)
        pos = begin
        for nxt in self._cuts(begin, end, cut):
            self.llm.eval(ids[pos:nxt])
            pos = nxt
            if report is not None:
                report(nxt)

    def _held_prefix(self, ids: list[int]) -> int:
        """The prefix ``Llama.generate`` keeps: the held tokens that match the prompt (all of it may match)."""
        return _matching(self.llm._input_ids, ids)  # _input_ids: the n_tokens held, none after reset

    def _common_prefix(self, ids: list[int]) -> int:
        """How many prompt tokens llama.cpp will reuse from the state it holds (for the usage report): the held
        prefix, less the last prompt token, which generate always evaluates to get logits."""
        return max(0, min(self._held_prefix(ids), len(ids) - 1))

    def _fingerprint(self) -> dict[str, object]:
        """Everything besides the tokens that changes the KV numbers: a state is only valid for all of it."""
        import llama_cpp

        return {
            "model": os.path.basename(self._path),
            "model_bytes": os.path.getsize(self._path),
            "n_ctx": self.llm.n_ctx(),
            "n_batch": self.llm.n_batch,
            "rope": rope_kwargs(self.config.rope),
            "flash_attn": True,
            "llama_cpp": llama_cpp.__version__,
        }

    def _prefix_from_store(self, ids: list[int], n: int, on_prefill: Callable[[int, int], None] | None = None) -> int:
        """Put the state of the prompt's first ``n`` tokens (its shared prefix, up to the cut) in place: from
        disk if stored, else computed from nothing and stored. Returns the prompt tokens not computed by this
        call. Computed or restored, the state was read in the batches of a cold read (:meth:`_cuts`), so greedy
        outputs are identical either way."""
        store = self.kv_store
        assert store is not None
        key = store.key(self._fingerprint(), ids[:n])
        t0 = time.perf_counter()
        entry = store.get(key, ids[:n])
        if entry is not None and entry.state is not None and load_llama_state(self.llm, ids[:n], entry.state):
            restore_s = time.perf_counter() - t0
            self.kv_event = {"event": "hit", "tokens": n, "bytes": entry.bytes, "restore_s": restore_s}
            return n
        self.llm.reset()  # a stored state is always a cold evaluation of exactly these tokens
        self._eval_batches(ids, 0, n, n, None if on_prefill is None else lambda pos: on_prefill(pos, len(ids)))
        t1 = time.perf_counter()
        state = save_llama_state(self.llm)
        path = store.put(key, ids[:n], state, {"model": os.path.basename(self._path), "n_ctx": self.llm.n_ctx()})
        self.kv_event = {"event": "miss", "tokens": n, "bytes": len(state), "eval_s": t1 - t0,
                         "save_s": time.perf_counter() - t1, "stored": path is not None}  # fmt: skip
        return 0

    def close(self) -> None:
        self.llm.close()


def load_tokenizer(config: GeneratorConfig) -> LlamaTokenizer:
    return LlamaTokenizer(config)


def load_generator(
    config: GeneratorConfig, tokenizer: object | None = None, state_dir: Path | None = None
) -> LlamaCppGenerator:
    """With ``state_dir``, the generator keeps document prefixes' KV states on disk there (its own store)."""
    generator = LlamaCppGenerator(config)
    if state_dir is not None:
        generator.kv_store = KVStore(state_dir)
    return generator
