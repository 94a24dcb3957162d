"""Batch RAG-vs-LC runs a researcher can trust and resume: one fsynced JSONL row per (sample, mode).

Rows are appended and fsynced one by one, so a killed run loses at most the sample in flight (its modes run
together, in one worker, whatever the executor) and a rerun skips what is done. Failures become rows (never
silently dropped); LC that cannot fit is a "refused" row scored n/a, not 0, because it measures the window,
not the model. Identical prompts are generated once per sample.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatqa.config import Config
from chatqa.errors import ChatQAError, ContextTooLongError, InputError
from chatqa.evaluation import rundir
from chatqa.evaluation import suites as st
from chatqa.evaluation.metrics import gold_in_context
from chatqa.evaluation.metrics import score as score_metric
from chatqa.evaluation.report import write_report
from chatqa.executors import Executor, LocalExecutor, Work
from chatqa.generation import CachingGenerator, Generation, Generator
from chatqa.progress import bar
from chatqa.routing import MODES

DEFAULT_MODES = ("rag", "long", "auto")
SECONDS = ("index", "retrieve", "prefill", "decode", "total")


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    added: int  # rows written by this call
    skipped: int  # (sample, mode) pairs found done in rows.jsonl


class GenerationCache(CachingGenerator):
    """The pipeline's generator during a run (passed in, never patched): ``auto``/``self-route`` answers that
    route like ``long``/``rag`` reuse that generation (same prompt and budget, greedy decoding) instead of
    paying for it again; a resumed run's rows seed it with what the interrupted one generated."""

    def __init__(self, generator: Generator, rows: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(generator)
        for r in rows:
            if r.get("prompt_key") and r["prompt_key"] not in self.entries:
                s = r["seconds"]
                gen = Generation(r["prediction"], r["input_tokens"], r["output_tokens"], s["prefill"], s["decode"],
                                 cached_tokens=r["cached_tokens"])  # fmt: skip
                self.entries[r["prompt_key"]] = {"gen": gen, "seconds": s, "route": r["route"]}


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ChatQAError) else f"{type(exc).__name__}: {text}"


def _answer_fields(ans: Any, cache: GenerationCache) -> dict[str, Any]:
    u, s = ans.usage, ans.usage["seconds"]
    seconds = {k: round(float(s.get(k, 0.0)), 4) for k in SECONDS}
    seconds["total"] = round(max(0.0, s["total"] - s.get("load", 0.0)), 4)  # loading models is the run's cost
    hits = [e for _, e in cache.calls if e is not None]
    judged = u.get("judge")  # Self-Route's judge: one read of its own prompt, never a cached generation
    if len(hits) == len(cache.calls) == 1 and hits[0].get("route") == ans.route and hits[0].get("seconds"):
        seconds = dict(hits[0]["seconds"])  # the same answer by the same route: it costs what it cost then
        if judged:
            seconds["prefill"] = round(seconds["prefill"] + judged["seconds"], 4)
            seconds["total"] = round(seconds["total"] + judged["seconds"], 4)
    else:  # reused generation(s) (e.g. long = rag on a one-chunk document): own retrieval, their generation time
        seconds["total"] = round(seconds["total"] + sum(e["gen"].prefill_s + e["gen"].decode_s for e in hits), 4)
    cites = ans.citations if ans.route == "rag" else (ans.attempts[0]["citations"] if ans.attempts else None)
    key = cache.calls[0][0] if len(cache.calls) == 1 else None
    if key is not None and cache.entries[key]["gen"].text != ans.answer:
        key = None  # a judged decline answers "unanswerable", not its generation: a resume must not seed it as one
    return {
        "route": ans.route, "reason": ans.reason, "k": None if cites is None else len(cites),
        "input_tokens": u["prompt_tokens"], "output_tokens": u["completion_tokens"],
        "cached_tokens": u["cached_tokens"], "document_tokens": u["document_tokens"], "seconds": seconds,
        "truncated": ans.truncated, "reused": bool(hits), "prediction": ans.answer, "map_calls": u.get("map_calls"),
        "prompt_key": key, **({"judge": judged} if judged else {}),
        **({"rag_attempt": ans.attempts[0]["answer"]} if ans.attempts else {}),  # Self-Route's declined RAG try
    }  # fmt: skip


def _blank_row(suite: st.Suite, sample: Any, mode: str, chunk_tokens: int, ask: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": sample.id, "suite": suite.name, "task": sample.task, "mode": mode,
        "length": sample.meta.get("target_length"), "depth": sample.meta.get("depth"), "route": None,
        "reason": None, "k": None, "chunk_tokens": chunk_tokens, "input_tokens": 0,
        "output_tokens": 0, "cached_tokens": 0, "document_tokens": None, "seconds": dict.fromkeys(SECONDS, 0.0),
        "compute_seconds": 0.0, "truncated": False, "reused": False, "prompt_key": None, "prediction": None,
        "gold": st.gold_for(suite, sample), "score": 0.0, "error": None, "template_set": ask.get("template_set"),
    }  # fmt: skip
    return row


def ask_options(qa: Any, suite: st.Suite, sample: Any, mode: str, ask: dict[str, Any]) -> dict[str, Any]:
    """The options one (sample, mode) row is asked with (route, budgets, the suite's prompt): one place, so a
    diagnostic that rebuilds a row's prompt (eval/gold_in_context.py) asks exactly what the run asked."""
    fmt, variant = qa.config.generator.prompt_format, ask.get("variant")
    render = qa.generator.render_chat if fmt == "chat" else None
    return {"mode": mode, "template": st.template_for(suite, sample, fmt, render, variant), "top_k": ask["top_k"],
            "truncate": ask["truncate"], "max_new_tokens": st.max_new_tokens_for(suite, sample.task, fmt, variant),
            "stop": st.stop_for(suite, sample, fmt, variant)}  # fmt: skip


def context_fields(qa: Any, doc: Any, citations: list[dict[str, Any]], metric: str, gold: Any) -> dict[str, Any]:
    """``gold_in_context`` of a RAG row: did the chunks the reader was given (its citations) hold an accepted
    answer? Empty where the metric cannot tell (see :func:`~chatqa.evaluation.metrics.gold_in_context`)."""
    by_id = {c.id: c for c in qa.chunks([doc])}
    context = "\n".join(by_id[c["chunk"]].text for c in citations if c.get("chunk") in by_id)
    got = gold_in_context(metric, context, gold)
    return {} if got is None else {"gold_in_context": got}


def run_one(qa: Any, suite: st.Suite, sample: Any, mode: str, cache: GenerationCache, ask: dict[str, Any]) -> dict:
    """One (sample, mode) row; every failure is caught here and recorded, so the run never drops a sample."""
    row = _blank_row(suite, sample, mode, qa.config.chunking.chunk_tokens, ask)
    from chatqa.ingest import Document

    cache.calls = []
    start = time.perf_counter()
    doc = Document.from_text(sample.context, sample.id)
    try:
        ans = qa.ask(st.question_for(suite, sample), docs=[doc], messages=sample.messages,
                     **ask_options(qa, suite, sample, mode, ask))  # fmt: skip
        row.update(_answer_fields(ans, cache))
        metric = st.metric_for(suite, sample.task)
        if ans.route == "rag":
            row.update(context_fields(qa, doc, ans.citations, metric, row["gold"]))
        got = score_metric(metric, ans.answer, row["gold"], **st.metric_kwargs_for(suite, sample))
        row["score"] = None if got is None else float(got)
        if got is None:
            row["excluded"] = "no non-empty reference (left out of the mean, as the official scorer does)"
        row.update(st.row_extras(suite, sample, ans.answer))
        if ask.get("judge") is not None and sample.task == "longeval-topics":
            row.update(judge=ask["judge"].profile, judge_score=ask["judge"](str(row["gold"]), ans.answer))
    except ContextTooLongError as exc:
        if mode != "long":
            row["error"] = one_line(exc)
        else:
            row.update(route="refused", reason=one_line(exc), score=None,
                       error=f"LC impossible: the document does not fit the window ({one_line(exc)})")  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - recorded as an error row, the run goes on
        row["error"] = one_line(exc)
    row["compute_seconds"] = round(time.perf_counter() - start, 4)
    if row["document_tokens"] is None:
        row["document_tokens"] = _count(qa, sample.context)
    row["length"] = st.sample_length(sample, row["document_tokens"])
    if row["prompt_key"] and not row["reused"]:
        cache.entries[row["prompt_key"]].update(seconds=row["seconds"], route=row["route"])
    return row


def run_sample(qa: Any, item: tuple[Any, list[str], list[dict[str, Any]]], shared: tuple[Any, dict]) -> list[dict]:
    """The executor's task: every pending mode of one sample, in one worker, so ``auto``/``self-route`` reuse the
    ``long``/``rag`` generation of the same sample (a resumed run's rows of the sample seed that reuse)."""
    sample, modes, done_rows = item
    spec, ask = shared
    cache = GenerationCache(qa.generator, done_rows)
    cached = qa.with_generator(cache)
    return [run_one(cached, spec, sample, mode, cache, ask) for mode in modes]


def _works(spec: st.Suite, todo: list[tuple[Any, str]], done_rows: list[dict[str, Any]], ask: dict) -> list[Work]:
    by_sample: dict[tuple[str, str], tuple[Any, list[str]]] = {}
    for sample, mode in todo:
        by_sample.setdefault((sample.task, sample.id), (sample, []))[1].append(mode)
    done: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in done_rows:
        done.setdefault((r["task"], r["id"]), []).append(r)
    return [Work(f"{k[0]}/{k[1]}", (sample, modes, done.get(k, [])), (spec, ask))
            for k, (sample, modes) in by_sample.items()]  # fmt: skip


def _selected(samples: list[Any], only: Sequence[str] | None) -> list[Any]:
    """The samples named by id or task; a name that matches none is an error, not an empty piece."""
    if not only:
        return samples
    wanted = set(only)
    unknown = wanted - {s.id for s in samples} - {s.task for s in samples}
    if unknown:
        raise InputError(f"--only: no sample or task named {', '.join(sorted(unknown))} in this run")
    return [s for s in samples if s.id in wanted or s.task in wanted]


def _lost_rows(qa: Any, spec: st.Suite, sample: Any, modes: list[str], error: str | None) -> list[dict[str, Any]]:
    """A sample whose worker died twice: error rows (a resume redoes them), never a silent gap."""
    rows = []
    for mode in modes:
        row = _blank_row(spec, sample, mode, qa.config.chunking.chunk_tokens, {})
        row["error"], row["document_tokens"] = error or "worker lost", _count(qa, sample.context)
        row["length"] = st.sample_length(sample, row["document_tokens"])
        rows.append(row)
    return rows


def _preload(qa: Any, modes: Sequence[str]) -> float:
    """Load the models before the first sample, so no row's cost includes loading them."""
    start = time.perf_counter()
    _ = qa.generator
    if set(modes) - {"long"}:
        _ = qa.embedder
    return round(time.perf_counter() - start, 3)


def _count(qa: Any, text: str) -> int | None:
    try:
        return qa.tokenizer.count(text)
    except Exception:  # noqa: BLE001 - the length is informative only
        return None


def run_suite(
    suite: str | st.Suite,
    profile: str = "default",
    *,
    modes: Sequence[str] = DEFAULT_MODES,
    lengths: Sequence[int] | str | None = None,
    depths: Sequence[float] | None = None,
    n: int | None = None,
    limit: int | None = None,
    seed: int | None = None,
    data_dir: str | Path | None = None,
    out: str | Path = "runs",
    top_k: int | None = None,
    truncate: str | None = None,
    overrides: dict[str, Any] | None = None,
    qa: Any = None,
    progress: bool = False,
    command: str | None = None,
    variant: str | None = None,
    judge: str | None = None,
    executor: Executor | None = None,
    only: Sequence[str] | None = None,
    stop_after: float | None = None,
) -> RunResult:
    """Run ``suite`` for every mode, resuming into its run folder, and rebuild the summary and report.

    ``qa`` reuses an already loaded :class:`chatqa.ChatQA` (its config wins over ``profile``/``overrides``).
    ``variant`` names a prompt variant (LongEval completion prompts, InfiniteBench chat prompts); ``judge`` a
    profile whose model judges LongEval topic answers as LongChat's GPT-3.5 judge does (the containment score
    stays the default).
    ``executor`` runs the samples elsewhere (e.g. a :class:`~chatqa.executors.RayExecutor`); rows are still
    written here only, so resume works the same.

    ``only`` (sample ids or task names) and ``stop_after`` (seconds; the run stops at the first sample that
    finishes after it) split a run that is too long for one sitting into pieces: neither is part of the run's
    identity, so each piece resumes the same folder and the finished folder is what one uninterrupted
    invocation writes."""
    spec = suite if isinstance(suite, st.Suite) else st.load_suite(suite)
    modes = list(dict.fromkeys(modes))
    if not modes:
        raise InputError(f"no mode given (choose from {', '.join(MODES)})")
    for mode in modes:  # the config layer's checks and messages, as for `chatqa ask --mode`
        Config().with_options(**{"routing.mode": mode, "routing.truncate": truncate})
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1")
    if stop_after is not None and stop_after <= 0:
        raise InputError("--stop-after must be more than 0")
    lengths = st.parse_lengths(lengths) if lengths else None
    data = str(Path(data_dir).expanduser().resolve()) if data_dir else None
    opts = st.resolve_options(spec, st.SuiteOptions(lengths, list(depths or []) or None, n, limit, seed, data,
                                                     variant))  # fmt: skip
    if judge and spec.source != "longeval_topics":
        raise InputError(f"--judge applies to LongEval topics; suite {spec.name} is scored by its own metric")
    if qa is None:
        from chatqa.pipeline import ChatQA

        qa = ChatQA.from_profile(profile, **(overrides or {}))
    cfg = qa.config
    template_set = st.template_set_for(spec, cfg.generator.prompt_format, opts.variant)
    ask = {"top_k": top_k or cfg.retrieval.top_k, "truncate": truncate or cfg.routing.truncate,
           "variant": opts.variant, "template_set": template_set, "judge_profile": judge}  # fmt: skip
    samples = st.build_samples(spec, opts, qa.tokenizer.count)  # bad data fails before a folder is made
    selected = _selected(samples, only)
    run = rundir.run_path(Path(out), spec, cfg, modes, opts, ask)
    with rundir.lock(run):  # a second `chatqa eval run` into this folder fails at once instead of doubling rows
        rundir.prepare(run, spec, cfg, modes, opts, ask, command)
        done_rows = rundir.read_rows(run / "rows.jsonl")
        done = {(r["task"], r["id"], r["mode"]) for r in done_rows}
        added = 0
        todo = [(s, m) for s in selected for m in modes if (s.task, s.id, m) not in done]
        try:
            if todo:  # a finished run only rebuilds its report: no model is loaded
                local = executor is None or isinstance(executor, LocalExecutor)
                if local:
                    rundir.note(run, load_seconds=_preload(qa, modes))
                if judge:
                    if not local:
                        raise InputError("--judge runs in this process only; use --executor local with it")
                    from chatqa.evaluation.judge import TopicJudge

                    ask["judge"] = TopicJudge.from_profile(judge)
                runner = executor or LocalExecutor(qa)
                rows_file, shown = run / "rows.jsonl", bar(progress, len(todo), spec.name, transient=False)
                deadline = None if stop_after is None else time.monotonic() + stop_after
                with rundir.Appender(rows_file) as rows, shown as advance:
                    for outcome in runner.run(run_sample, _works(spec, todo, done_rows, ask)):
                        sample, sample_modes, _ = outcome.work.item
                        for row in outcome.result or _lost_rows(qa, spec, sample, sample_modes, outcome.error):
                            rows.write(row)
                            added += 1
                            advance(f"{sample.id} {row['mode']}")
                        if deadline is not None and time.monotonic() > deadline:
                            break  # the rest stays todo: the next invocation resumes it
                if not local:
                    rundir.note(run, executor=runner.stats.to_dict())
        except BaseException:  # interrupted (Ctrl-C) or a bug: what was written is still reported
            with contextlib.suppress(Exception):
                write_report(run)
            raise
        skipped = sum((s.task, s.id, m) in done for s in samples for m in modes)
        return RunResult(run, write_report(run), added, skipped)
