"""Benchmark suites as data: one YAML file per suite names its loader, metric, template and budgets.

Keeping suites in YAML (``eval/suites/``) means a new length grid or metric is a reviewed data change, and a
run folder can store exactly the suite that produced it. Folders are searched like profiles: ``CHATQA_SUITES``,
then ``./eval/suites``, then the repository's own.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chatqa.errors import ConfigError, InputError
from chatqa.evaluation import datasets as ds
from chatqa.evaluation import templates as tpl
from chatqa.evaluation.samples import DEFAULT_DATA_DIR, Sample

REPO_SUITES = Path(__file__).resolve().parents[2] / "eval" / "suites"
Counter = Callable[[str], int]
Render = Callable[[list[dict[str, str]]], str]


@dataclass
class Suite:
    name: str
    source: str  # a key of LOADERS
    metric: str  # a chatqa.evaluation.metrics name; "{task}" is filled per sample
    max_new_tokens: int | dict[str, int]  # one budget, or one per task
    args: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] | None = None
    gold: str = "label"  # label (meta["label"]) | answers | meta.<key>
    template: str | None = None  # infinitebench:<task> | longeval | ruler:qa | None (profile format)
    # a named prompt variant (LongEval completion: longchat | answer-opening; InfiniteBench chat: answer-opening)
    variant: str | None = None
    metric_kwargs: dict[str, Any] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)  # per task, when the data has no question text
    lengths: list[int] | None = None
    depths: list[float] | None = None
    n: int | None = None
    description: str = ""
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SuiteOptions:
    """Command-line choices layered over the suite's defaults (None keeps the suite's value)."""

    lengths: list[int] | None = None
    depths: list[float] | None = None
    n: int | None = None
    limit: int | None = None  # at most this many samples per (task, length, depth) cell, or per task/file
    seed: int | None = None
    data_dir: str | None = None
    variant: str | None = None


def parse_lengths(text: str | list[Any]) -> list[int]:
    """``"2k,4k,1500"`` -> [1500, 2048, 4096], sorted and without repeats; k means x1024 as in the papers'
    "128K", so "32k" is exactly a 32,768-token window. The one parser for suites, ``eval run`` and ``calibrate``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = set()
    for item in items:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*", str(item))
        value = int(float(m.group(1)) * (1024 if m.group(2) else 1)) if m else 0
        if value < 1:
            raise InputError(f"bad length {str(item).strip()!r}: use token counts such as 2k,4k,32768")
        out.add(value)
    return sorted(out)


def parse_depths(text: str) -> list[float]:
    """``"0,0.5,1"`` -> needle depths as fractions of the context (the one parser for eval and calibrate)."""
    try:
        depths = [float(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise InputError(f"bad depths {text!r}: use fractions such as 0,0.5,1") from None
    if not depths or not all(0.0 <= d <= 1.0 for d in depths):
        raise InputError(f"bad depths {text!r}: each depth must be between 0 and 1")
    return depths


def suite_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("CHATQA_SUITES", "").split(os.pathsep) if p]
    return [*dirs, Path("eval") / "suites", REPO_SUITES]


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        path = next((d / f"{name_or_path}.yaml" for d in suite_dirs() if (d / f"{name_or_path}.yaml").is_file()),
                    Path())  # fmt: skip
        if not path.name:
            known = sorted({p.stem for d in suite_dirs() if d.is_dir() for p in d.glob("*.yaml")})
            raise ConfigError(f"no eval suite named '{name_or_path}' (known: {', '.join(known) or 'none'})")
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data.setdefault("name", path.stem)
        suite = Suite(**data, path=str(path.resolve()))
    except (yaml.YAMLError, TypeError) as exc:
        raise ConfigError(f"suite {path} is invalid: {str(exc).splitlines()[0]}") from None
    if suite.source not in LOADERS:
        raise ConfigError(f"suite {path}: unknown source '{suite.source}' (known: {', '.join(LOADERS)})")
    suite.lengths = parse_lengths(suite.lengths) if suite.lengths else None
    return suite


# -- loaders: each adapts one existing loader/generator in chatqa.evaluation.datasets to (suite, options) ------------
def _data(o: SuiteOptions, rel: str | None) -> Path | None:
    return None if rel is None else Path(o.data_dir or DEFAULT_DATA_DIR) / rel


def _seed(s: Suite, o: SuiteOptions) -> Any:
    return o.seed if o.seed is not None else s.args.get("seed", 0)


def _synthetic(s: Suite, o: SuiteOptions, count: Counter) -> list[Sample]:
    hay = ds.load_gutenberg(_data(o, s.args["haystack"])) if s.args.get("haystack") else None
    return ds.make_synthetic_suite(s.args["task"], o.lengths or [], o.depths or [0.5], o.n or 1, _seed(s, o),
                                   hay, count)  # fmt: skip


def _infinitebench(s: Suite, o: SuiteOptions, count: Counter) -> list[Sample]:
    return [x for t in s.tasks or [] for x in ds.load_infinitebench(o.data_dir, t, o.limit)]


def _ruler(s: Suite, o: SuiteOptions, count: Counter) -> list[Sample]:
    """RULER QA; HotpotQA reads the full dev distractor file (``hotpot_dev_distractor_v1.json``) when the data
    folder has it or the suite names it (``args.file``), else the shared first-500 file."""
    n = min(o.n or 1, o.limit or o.n or 1)
    src, data = s.args["source"], o.data_dir or None
    file = s.args.get("file")
    if not file and src == "hotpotqa":
        full = [Path(data or DEFAULT_DATA_DIR) / d / "hotpot_dev_distractor_v1.json" for d in ("", "squad_hotpotqa")]
        file = next((str(f) for f in full if f.is_file()), None)
    return [x for n_tok in o.lengths or [] for x in ds.make_ruler_qa(src, n_tok, n, _seed(s, o), count, data, file)]


def _question_set(s: Suite, o: SuiteOptions, count: Counter) -> list[Sample]:
    from chatqa.evaluation.question_sets import load_question_set

    path = Path(s.args["path"])
    if not path.is_absolute() and s.path:
        path = Path(s.path).parent / path  # next to the suite YAML
    return load_question_set(path, s.args["docs"], o.data_dir, o.limit, s.args.get("answerable"),
                             s.args.get("positions"), s.args.get("ids"))  # fmt: skip


def _per_file(load: Callable[..., list[Sample]]) -> Callable[[Suite, SuiteOptions, Counter], list[Sample]]:
    def loader(s: Suite, o: SuiteOptions, count: Counter) -> list[Sample]:
        extra = {"sizes": s.args["sizes"]} if "sizes" in s.args else {}
        return load(_data(o, s.args.get("path")), limit=min(o.n or 10**9, o.limit or 10**9), **extra)

    return loader


def _chatrag(s: Suite, o: SuiteOptions, count: Counter) -> list[Sample]:
    from chatqa.evaluation.chatrag import load_chatrag

    limit = min(o.n or 10**9, o.limit or 10**9)
    index = s.args.get("quac_answerable_index")  # a JSON list of ints (ChatQA's evaluation_utils.py)
    listed = set(json.loads(Path(index).expanduser().read_text(encoding="utf-8"))) if index else None
    return [
        x
        for t in s.tasks or []
        for x in load_chatrag(o.data_dir or "", t, limit, count, answerable_index=listed if t == "quac" else None)
    ]


LOADERS: dict[str, Callable[[Suite, SuiteOptions, Counter], list[Sample]]] = {
    "synthetic": _synthetic,
    "infinitebench": _infinitebench,
    "ruler_qa": _ruler,
    "longeval_lines": _per_file(ds.load_longeval_lines),
    "longeval_topics": _per_file(ds.load_longeval_topics),
    "quac": _per_file(ds.load_quac),
    "narrativeqa": _per_file(ds.load_narrativeqa),
    "question_set": _question_set,
    "chatrag": _chatrag,
}
CHATRAG_SOURCES = ("chatrag", "quac", "narrativeqa")
GRID_SOURCES = ("synthetic", "ruler_qa")  # the only suites whose lengths (and depths) are chosen by the run


def resolve_options(suite: Suite, opts: SuiteOptions) -> SuiteOptions:
    """Fill unset options from the suite; refuse a length grid where the data has fixed lengths."""
    if suite.source not in GRID_SOURCES and (opts.lengths or opts.depths):
        raise InputError(f"suite {suite.name} has fixed lengths: --lengths/--depths apply to generated suites")
    if suite.source == "infinitebench" and not opts.data_dir:
        raise InputError("suite infinitebench needs --data-dir: the folder with the official <task>.jsonl files")
    if suite.source == "chatrag" and not opts.data_dir:
        raise InputError(f"suite {suite.name} needs --data-dir: the ChatRAG Bench data folder (quac/test.json, ...)")
    if suite.source == "ruler_qa" and opts.depths:
        raise InputError(f"suite {suite.name} has no needle depth: --depths applies to synthetic suites")
    return SuiteOptions(
        lengths=opts.lengths or suite.lengths, depths=opts.depths or suite.depths, n=opts.n or suite.n,
        limit=opts.limit, seed=opts.seed, data_dir=opts.data_dir, variant=variant_for(suite, opts.variant),
    )  # fmt: skip


def build_samples(suite: Suite, opts: SuiteOptions, count: Counter) -> list[Sample]:
    """The suite's samples in a stable order, at most ``limit`` per (task, length, depth) cell."""
    try:
        samples = LOADERS[suite.source](suite, opts, count)
    except KeyError as exc:
        raise ConfigError(f"suite {suite.name}: missing setting {exc} in its args") from None
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"suite {suite.name}: {exc}") from None
    if opts.limit is None or suite.source != "synthetic":  # the other loaders apply the limit themselves
        return samples
    seen: dict[tuple[str, Any], int] = {}
    kept = []
    for s in samples:
        cell = (s.task, s.meta.get("target_length"), s.meta.get("depth"))
        seen[cell] = seen.get(cell, 0) + 1
        if seen[cell] <= opts.limit:
            kept.append(s)
    return kept


# -- per-sample settings ----------------------------------------------------------------------------------
def metric_for(suite: Suite, task: str) -> str:
    return suite.metric.format(task=task)


def max_new_tokens_for(suite: Suite, task: str, prompt_format: str = "chat", variant: str | None = None) -> int:
    """The suite's budget; LongChat's own completion prompt generates 15 tokens (its storywriter path)."""
    family = (suite.template or "").partition(":")[0]
    if family == "longeval" and prompt_format == "completion" and variant_for(suite, variant) == "longchat":
        return tpl.LONGCHAT_OPEN_MAX_NEW_TOKENS
    budget = suite.max_new_tokens
    return int(budget[task] if isinstance(budget, dict) else budget)


def gold_for(suite: Suite, sample: Sample) -> Any:
    if sample.task == "convfinqa":  # scored on the executed answer; the formula is a keyword (metric_kwargs_for)
        return sample.meta.get("label")
    if suite.gold == "answers":
        return list(sample.answers)
    key = suite.gold.removeprefix("meta.")
    return sample.meta[key] if key in sample.meta else (sample.answers[0] if sample.answers else None)


def _edges(text: str) -> tuple[str, str]:
    return text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]


def _keep_edges(template: str, sample: Sample) -> str:
    """The pipeline strips a document's and a question's outer whitespace; official prompts keep it (the
    passkey context ends with a newline, a LongEval record with a blank line, the KV input starts with one,
    math_find's ends with a space), so it is put back around ``{context}`` and ``{input}``/``{question}``."""
    for name, value in (("context", sample.context), ("input", sample.question), ("question", sample.question)):
        if value.strip() and f"{{{name}}}" in template:
            lead, trail = _edges(value)
            template = template.replace(f"{{{name}}}", lead + f"{{{name}}}" + trail, 1)
    return template


def variant_for(suite: Suite, variant: str | None = None) -> str | None:
    """The named prompt variant: LongEval's completion prompts (always one), InfiniteBench's chat prompts (none
    unless asked for: the official prompts are the default); ``None`` where a suite has no variants."""
    family = (suite.template or "").partition(":")[0]
    if family == "infinitebench":
        chosen = variant or suite.variant
        if chosen and chosen not in tpl.INFINITEBENCH_VARIANTS:
            raise InputError(f"unknown InfiniteBench variant '{chosen}' (choose from "
                             f"{', '.join(tpl.INFINITEBENCH_VARIANTS)})")  # fmt: skip
        return chosen or None
    if family != "longeval":
        if variant:
            raise InputError(
                f"suite {suite.name} has no prompt variants (--variant applies to LongEval and InfiniteBench suites)"
            )
        return None
    chosen = variant or suite.variant or tpl.LONGEVAL_DEFAULT_VARIANT
    if chosen not in tpl.LONGEVAL_VARIANTS:
        raise InputError(f"unknown LongEval variant '{chosen}' (choose from {', '.join(tpl.LONGEVAL_VARIANTS)})")
    return chosen


def template_set_for(suite: Suite, prompt_format: str, variant: str | None = None) -> str:
    """The recorded name of the prompt set (official templates x the model's wrapper x variant)."""
    if not suite.template:
        return tpl.template_set("chatrag" if suite.source in CHATRAG_SOURCES else "", prompt_format)
    family = suite.template.partition(":")[0]
    chosen = variant_for(suite, variant)
    if family == "infinitebench" and prompt_format == "completion":
        chosen = None  # the open-model prompts already end with the answer's opening: the variant changes nothing
    return tpl.template_set(family, prompt_format, chosen)


def template_for(suite: Suite, sample: Sample, prompt_format: str, render_chat: Render | None = None,
                 variant: str | None = None) -> str | None:  # fmt: skip
    """The official prompt, wrapped for the model, with ``{context}``/``{input}`` left open for the pipeline.

    Base models (completion format) get InfiniteBench's open-model templates, chat models the GPT-4 ones in
    their own chat template (system "You are a helpful assistant", as ``create_msgs``); ``chatqa`` models the
    GPT-4 ones in ChatQA's format. LongEval: completion prompts end with the variant's answer opening, chat
    prompts are one user message. RULER: the answer prefix goes after the (chat) template."""
    if not suite.template:
        return None
    family, _, name = suite.template.format(task=sample.task).partition(":")
    if family == "longeval":
        if prompt_format == "completion":
            text = tpl.LONGEVAL_TEMPLATE + tpl.longeval_open_ending(sample, variant_for(suite, variant) or "longchat")
        else:
            text = tpl.wrap_prompt(tpl.LONGEVAL_TEMPLATE, prompt_format, render_chat)
        return _keep_edges(text, sample)
    if family == "chatrag":  # ChatRAG's own input (the ChatQA format), whatever the profile's format
        from chatqa.evaluation.chatrag import chatrag_template

        return chatrag_template(sample)
    if family == "ruler":
        text = tpl.fill(tpl.RULER_QA_TEMPLATE, {"query": "{input}"})
        return tpl.wrap_prompt(text, prompt_format, render_chat, answer_prefix=tpl.RULER_QA_ANSWER_PREFIX)
    if family != "infinitebench":
        raise ConfigError(f"suite {suite.name}: unknown template '{suite.template}'")
    table = tpl.INFINITEBENCH_OPEN_TEMPLATES if prompt_format == "completion" else tpl.INFINITEBENCH_TEMPLATES
    text = tpl.fill(table[name], tpl.infinitebench_fields(sample))
    system = tpl.INFINITEBENCH_CHAT_SYSTEM if prompt_format == "chat" else None
    opening = ""
    if prompt_format != "completion" and variant_for(suite, variant) == "answer-opening":
        opening = tpl.reply_opening(tpl.INFINITEBENCH_CHAT_OPENINGS.get(name, ""), prompt_format)
    return _keep_edges(tpl.wrap_prompt(text, prompt_format, render_chat, system, opening), sample)


def stop_for(suite: Suite, sample: Sample, prompt_format: str, variant: str | None = None) -> list[str]:
    """Stop strings that end a completion-style answer (base models would go on writing the record)."""
    family = (suite.template or "").partition(":")[0]
    if family == "longeval" and prompt_format == "completion" and variant_for(suite, variant) == "answer-opening":
        return list(tpl.LONGEVAL_OPEN_STOPS.get(sample.task, []))
    return []


def metric_kwargs_for(suite: Suite, sample: Sample) -> dict[str, Any]:
    """The suite's metric options plus what a per-sample scorer needs (ConvFinQA: formula and question)."""
    if sample.task == "convfinqa":
        return {**suite.metric_kwargs, "formula": sample.meta.get("formula"), "question": sample.question}
    return dict(suite.metric_kwargs)


def row_extras(suite: Suite, sample: Sample, prediction: str) -> dict[str, Any]:
    """Per-row facts the report aggregates: for datasets with unanswerable turns (QuAC, DoQA), whether the
    gold is unanswerable and whether the model refused, for ``get_scores.py``'s two accuracies."""
    if sample.task == "convfinqa":  # what its scorer needs beside the gold, so a rescore can use it
        return {"formula": sample.meta.get("formula"), "question": sample.question}
    if "unanswerable" not in sample.meta or not sample.task.startswith(("quac", "doqa")):
        return {}  # get_scores.py reports the two accuracies for QuAC and DoQA only
    from chatqa.evaluation.metrics import is_refusal

    return {"gold_unanswerable": bool(sample.meta["unanswerable"]), "refusal": is_refusal(prediction),
            "answerable_listed": sample.meta.get("answerable_listed")}  # fmt: skip


def question_for(suite: Suite, sample: Sample) -> str:
    """Tasks whose instruction lives in the template (En.Sum, En.Dia) ship an empty ``input``; routing and
    retrieval still need a query, so the suite supplies one (it is not added to the official prompt)."""
    return sample.question if sample.question.strip() else suite.questions.get(sample.task, sample.question)


def sample_length(sample: Sample, document_tokens: int | None) -> int | None:
    """The grid length of a generated sample, a dataset's own size class (``nominal_length``), or else the next
    power of two of the document's tokens."""
    if sample.meta.get("single_cell"):  # datasets reported as one number (ChatRAG Bench)
        return None
    target = sample.meta.get("target_length") or sample.meta.get("nominal_length")
    if target:
        return int(target)
    return None if not document_tokens else 1 << (int(document_tokens) - 1).bit_length()
