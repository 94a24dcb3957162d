"""Benchmark scorers, re-implemented to give the same numbers as the official evaluation scripts.

A score is only comparable with a published one when it is computed exactly the way the benchmark authors
computed it, quirks included. Each scorer below therefore follows one official script and says which; where a
scorer deliberately departs from it, the docstring says so and why.

Sources:

* InfiniteBench: OpenBMB/InfiniteBench ``src/compute_scores.py`` at commit 88b3daa (the commit whose
  ``results/`` predictions and README scores ``tests/evaluation/test_conformance.py`` reproduces).
* ChatRAG Bench: NVIDIA ChatQA ``evaluation/get_scores.py`` and ``metrics.py`` (ParlAI-style token F1; items
  without a non-empty reference are left out of the mean).
* LongEval: DachengLi1/LongChat ``longeval/utils.py``.
* RULER: NVIDIA/RULER ``scripts/eval/synthetic/constants.py`` and ``scripts/eval/evaluate.py``.

Every scorer takes one prediction and its gold answer and returns a float in ``[0, 1]``; a benchmark score is
the mean over items times 100. :func:`score` dispatches on a metric name so that YAML suites can name metrics
as strings.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

__all__ = [
    "CHATRAG_REFUSAL",
    "INFINITEBENCH_TASKS",
    "METRICS",
    "UNANSWERABLE_KEYPHRASES",
    "chatrag_f1",
    "chatrag_normalize",
    "chatrag_unanswerable_correct",
    "convfinqa_hit",
    "is_refusal",
    "longeval_lines",
    "longeval_topics",
    "ruler_substring",
    "score",
    "score_infinitebench",
    "squad_normalize",
    "token_f1",
]

# --------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_PUNCTUATION_RE = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def token_f1(prediction_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """Bag-of-tokens F1, the SQuAD definition shared by InfiniteBench and ChatRAG Bench.

    Returns 0 when nothing overlaps, which also covers an empty prediction or gold (no division by zero).
    """
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _as_list(gold: Any) -> list[Any]:
    """Wrap a single gold answer in a list, so scorers accept either one answer or several."""
    if isinstance(gold, str) or not isinstance(gold, Sequence):
        return [gold]
    return list(gold)


def _spaces_for(text: str, chars: Sequence[str]) -> str:
    """Replace each of ``chars`` by a space, as the official InfiniteBench parsers do before splitting."""
    for char in chars:
        text = text.replace(char, " ")
    return text


def _squeeze_spaces(text: str) -> str:
    """Collapse runs of spaces (only spaces, not newlines), as the official multiple-choice parsers do."""
    while "  " in text:
        text = text.replace("  ", " ")
    return text


# --------------------------------------------------------------------------------------------------------
# InfiniteBench (OpenBMB/InfiniteBench src/compute_scores.py @ 88b3daa)
# --------------------------------------------------------------------------------------------------------

_KV_SEPARATORS = ("\n", ":", '"', "'", ".", ",", "?", "!", "{", "}")
_CHOICE_SEPARATORS = ("\n", '"', "'", ".", ",", "?", "!", "{", "}")
_CHOICE_PREFIXES = ("answer is:", "answer:", "answer is", "option is")
_CODE_DEBUG_SEPARATORS = ("\n", "`", "'", '"', "-", "*", "Option", "option")
# Order matters: the official code stops at the first prefix found ("correct option is:" can never win over
# "is:", but it is listed upstream, so it is kept for fidelity).
_CODE_DEBUG_PREFIXES = ("answer is:", "is:", "answer:", "correct option is:")
_FIRST_NUMBER_RE = re.compile(r"\d+\.\d+|\d+")


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lowercase, delete punctuation, drop a/an/the, collapse whitespace.

    Punctuation is *deleted* (so "don't" becomes "dont"); ChatRAG's :func:`chatrag_normalize` instead turns it
    into spaces. The two differ on purpose because each benchmark used its own.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


def first_int_match(text: str) -> str:
    """The first maximal run of ASCII digits in ``text``, or ``""``; how passkey answers are read."""
    match = re.search(r"[0-9]+", text)
    return match.group(0) if match else ""


def _single_label(label: Any) -> Any:
    """Unwrap a one-element label list; later InfiniteBench releases store passkey labels as lists."""
    return label[0] if isinstance(label, list) else label


def ib_passkey(prediction: str, label: Any) -> float:
    """Passkey: correct when the first run of digits in the output equals the label.

    So "The pass key is 71432." is right, but "Key 1: 71432" is wrong (the first run is "1"): that is the
    official behaviour and published scores depend on it.
    """
    return float(str(_single_label(label)) == first_int_match(prediction))


def ib_number_string(prediction: str, label: Any) -> float:
    """Number string (Retrieve.Number): same rule as passkey, first run of digits equals the label."""
    return ib_passkey(prediction, label)


def ib_kv_retrieval(prediction: str, label: Any) -> float:
    """KV retrieval: the gold UUID must be a whole token once quotes and punctuation become spaces.

    Hyphens are not separators (they are part of a UUID), so a UUID embedded in a longer hyphenated string
    does not count. A one-element label list is unwrapped (a generalisation; the official labels are strings).
    """
    words = _spaces_for(prediction, _KV_SEPARATORS).split()
    return float(_single_label(label) in words)


def ib_longbook_qa_eng(prediction: str, label: Any) -> float:
    """En.QA: SQuAD-normalised token F1, best over the gold answers."""
    pred_tokens = squad_normalize(prediction).split()
    return max((token_f1(pred_tokens, squad_normalize(g).split()) for g in _as_list(label)), default=0.0)


@lru_cache(maxsize=1)
def _rouge_lsum_scorer() -> Any:
    """One shared ROUGE-Lsum scorer; built lazily so importing this module does not need rouge-score."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)


def ib_longbook_sum_eng(prediction: str, label: Any) -> float:
    """En.Sum: ROUGE-Lsum F-measure, no stemming, exactly as HF ``evaluate.load("rouge")`` computes it.

    Newlines matter: rouge-score's Lsum treats each ``\\n``-separated line as a sentence and computes the
    union-LCS over them. The official script passes the raw texts, with no sentence splitting added (unlike
    the HF summarisation examples that insert newlines with nltk), so a one-paragraph summary is scored as
    a single sentence. We do the same. A label list is scored as multi-reference (best F-measure), which
    is what ``evaluate`` does when each reference is a list.
    """
    scorer = _rouge_lsum_scorer()
    if isinstance(label, list):
        result = scorer.score_multi([str(x) for x in label], prediction)
    else:
        result = scorer.score(str(label), prediction)
    return float(result["rougeLsum"].fmeasure)


def _choice_after_prefix(text: str, label: Sequence[str]) -> bool | None:
    """Apply the answer-phrase rule; ``None`` when no phrase occurs (so the caller falls through)."""
    for prefix in _CHOICE_PREFIXES:
        idx = text.find(prefix)
        if idx == -1:
            continue
        start = idx + len(prefix) + 1  # the phrase, then one separator character
        if len(text) < start:  # the output ends right at the phrase
            return False
        return any(text[start:].startswith(s) for s in label)
    return None


def ib_longbook_choice_eng(prediction: str, label: Any) -> float:
    """En.MC. The label is ``[option_text, letter]``; the official parsing order is:

    1. the first character, if it is one of A-D, is the answer (so "A bird..." reads as option A);
    2. the whole stripped output equal to the option text or to the letter is correct;
    3. after an answer phrase ("answer is:", "answer:", "answer is", "option is"), the text must start with
       the option text or the letter;
    4. otherwise the first whitespace token that is a *substring* of "ABCD" is the answer; a token like "AB"
       passes that test but is not the letter, so it scores 0.
    """
    pred = prediction.strip()
    if not pred:
        return 0.0
    if pred[0] in "ABCD":
        return float(pred[0] in label)
    if pred in label:
        return 1.0
    pred = _squeeze_spaces(_spaces_for(pred, _CHOICE_SEPARATORS))
    verdict = _choice_after_prefix(pred, label)
    if verdict is not None:
        return float(verdict)
    for word in pred.split():
        if word in "ABCD":
            return float(word in label)
    return 0.0


def ib_longdialogue_qa_eng(prediction: str, label: Any) -> float:
    """En.Dia: correct when the *first* gold name is one of the upper-cased output tokens.

    Only ``label[0]`` counts and it is not upper-cased (the official labels already are); alias names later
    in the label list are ignored, as upstream.
    """
    name = _single_label(label)
    words = [w.upper() for w in _spaces_for(prediction.strip(), _KV_SEPARATORS).split()]
    return float(name in words)


def ib_math_find(prediction: str, label: Any) -> float:
    """Math.Find: the first number in the output (``\\d+\\.\\d+`` or ``\\d+``, no sign) equals the label.

    An int label is compared with ``int(...)``, a float label with ``float(...)``. The official code raises
    when an int label meets a decimal answer ("3.5"); we score that as wrong instead of crashing.
    """
    label = _single_label(label)
    if isinstance(label, bool) or not isinstance(label, int | float):
        raise TypeError(f"math_find expects an int or float label, got {type(label).__name__}")
    match = _FIRST_NUMBER_RE.search(prediction)
    if match is None:
        return 0.0
    number = match.group(0)
    if isinstance(label, float):
        return float(float(number) == label)
    return float("." not in number and int(number) == label)


def ib_code_debug(prediction: str, label: Any) -> float:
    """Code.Debug. The label is ``[function_name, letter]``; official parsing order:

    1. the output starts with "X." or "X:" for the gold letter X;
    2. otherwise, after dashes, stars, quotes, backticks and the word "Option" become spaces, the text after
       the first answer phrase found ("answer is:", "is:", "answer:") must start with the letter or the
       function name. With no phrase the answer is wrong (there is no bare-letter fallback here).
    """
    pred = prediction.strip()
    fn_name, letter = label[0], label[1]
    if pred[:2] in (f"{letter}.", f"{letter}:"):
        return 1.0
    pred = _squeeze_spaces(_spaces_for(pred, _CODE_DEBUG_SEPARATORS))
    for prefix in _CODE_DEBUG_PREFIXES:
        idx = pred.find(prefix)
        if idx == -1:
            continue
        start = idx + len(prefix) + 1  # the phrase, then one separator character
        if len(pred) < start:
            return 0.0
        return float(pred[start:].startswith(letter) or pred[start:].startswith(fn_name))
    return 0.0


InfiniteBenchScorer = Callable[[str, Any], float]

INFINITEBENCH_SCORERS: dict[str, InfiniteBenchScorer] = {
    "passkey": ib_passkey,
    "number_string": ib_number_string,
    "kv_retrieval": ib_kv_retrieval,
    "longbook_qa_eng": ib_longbook_qa_eng,
    "longbook_sum_eng": ib_longbook_sum_eng,
    "longbook_choice_eng": ib_longbook_choice_eng,
    "longdialogue_qa_eng": ib_longdialogue_qa_eng,
    "math_find": ib_math_find,
    "code_debug": ib_code_debug,
}
INFINITEBENCH_TASKS: tuple[str, ...] = tuple(INFINITEBENCH_SCORERS)


def score_infinitebench(task: str, prediction: str, ground_truth: Any) -> float:
    """Score one InfiniteBench item in ``[0, 1]``; ``ground_truth`` is the preds file's field, as stored."""
    try:
        scorer = INFINITEBENCH_SCORERS[task]
    except KeyError:
        raise ValueError(f"unknown InfiniteBench task {task!r}; known: {', '.join(INFINITEBENCH_TASKS)}") from None
    return float(scorer(prediction, ground_truth))


# --------------------------------------------------------------------------------------------------------
# ChatRAG Bench (NVIDIA ChatQA evaluation/get_scores.py, metrics.py)
# --------------------------------------------------------------------------------------------------------

CHATRAG_REFUSAL = "Sorry. I cannot find the answer based on the context."
"""The canonical "unanswerable" string: ChatRAG's gold answer for unanswerable turns."""


UNANSWERABLE_KEYPHRASES: tuple[str, ...] = (
    "cannot find", "can't find", "not able to", "unable to", "does not provide", "cannot provide",
    "cannot answer", "couldnot answer", "can't answer", "couldn't answer", "cannot be found",
    "cannot be determined", "do not have", "couldn't find", "no information", "does not mention",
    "doesn't mention", "not explicitly mentioned", "not explicitly explain", "can not find",
    "could not find", "does not specify", "doesn't provide", "doesn't specify", "there is no",
    "not mentioned", "don't have", "don't know", "does not include", "doesn't include", "does not contain",
    "doesn't contain", "not provided", "does not indicate", "doesn't indicate", "does not disclose",
    "doesn't disclose",
)  # fmt: skip
"""The official list: an output containing any of these (case-insensitive) counts as a refusal."""


def chatrag_normalize(text: str) -> str:
    """ParlAI/ChatQA normalisation: lowercase, punctuation to *spaces*, drop a/an/the, collapse whitespace.

    Replacing rather than deleting punctuation means "well-known" gives two tokens ("well", "known"), unlike
    SQuAD's "wellknown"; ChatRAG numbers are only comparable with this variant.
    """
    text = _PUNCTUATION_RE.sub(" ", text.lower())
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


def is_refusal(text: str) -> bool:
    """Whether an output says it cannot answer: it contains one of :data:`UNANSWERABLE_KEYPHRASES`.

    This is a plain substring test on the lowercased text, as upstream: "there is no doubt that..." counts as
    a refusal too. Scores are only comparable if that quirk is kept.
    """
    lowered = text.lower()
    return any(phrase in lowered for phrase in UNANSWERABLE_KEYPHRASES)


def _is_gold_refusal(reference: str) -> bool:
    """Whether a gold answer marks the turn unanswerable: upstream compares the first answer with the
    canonical refusal (our local QuAC conversion writes that string for QuAC's CANNOTANSWER)."""
    return reference.strip() == CHATRAG_REFUSAL


def _canonical_refusal(text: str) -> str:
    """Map a prediction that contains any refusal keyphrase to :data:`CHATRAG_REFUSAL` (predictions only)."""
    return CHATRAG_REFUSAL if is_refusal(text) else text


def _chatrag_references(references: str | Sequence[str], dataset: str) -> list[str]:
    """The gold list as upstream scores it: stripped, empties skipped, INSCIT's extra refusal removed."""
    refs = [r.strip() for r in _as_list(references) if isinstance(r, str) and r.strip()]
    if "inscit" in dataset:
        # INSCIT lists the refusal as an extra reference on every turn; upstream removes it before scoring.
        refs = [r for r in refs if r != CHATRAG_REFUSAL]
    return refs


def chatrag_f1(prediction: str, references: str | Sequence[str], dataset: str | None = None) -> float | None:
    """ChatRAG Bench token F1 (ParlAI normalisation), best over references, as ``get_scores.py``.

    ``dataset`` selects the per-dataset rules of the official script, by substring as upstream does with file
    names: for ``quac``/``doqa*`` a *prediction* containing a refusal keyphrase becomes
    :data:`CHATRAG_REFUSAL` before F1 (the gold is left alone: gold "He was unable to finish the race in
    1952." is an answer, not a refusal). For ``inscit*`` the canonical refusal is removed from the
    references. A ``</s>`` left in the output is deleted; an empty output scores 0.

    Returns ``None`` when no reference is non-empty: upstream leaves such items out of the mean.
    """
    name = (dataset or "").lower()
    refs = _chatrag_references(references, name)
    if not refs:
        return None
    pred = prediction.strip().replace("</s>", "")
    if "quac" in name or "doqa" in name:
        pred = _canonical_refusal(pred)
    if not pred:
        return 0.0
    pred_tokens = chatrag_normalize(pred).split()
    return max(token_f1(pred_tokens, chatrag_normalize(r).split()) for r in refs)


def chatrag_unanswerable_correct(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the model refused exactly when the gold says the turn is unanswerable.

    Upstream reads the gold as unanswerable when its first answer is the canonical refusal, and counts a
    prediction as a refusal when, after keyphrase mapping, it contains "sorry" and "cannot find the answer",
    which is the same as :func:`is_refusal` on the raw output. It reports accuracy separately on
    unanswerable and answerable turns; average this per-item value within each group to get those.
    """
    refs = _as_list(references)
    gold_unanswerable = bool(refs) and _is_gold_refusal(str(refs[0]))
    return float(is_refusal(prediction) == gold_unanswerable)


def _is_float(value: Any) -> bool:
    """Whether ``float(value)`` succeeds (the official ``_is_float``)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _clean_convfinqa_output(prediction: str) -> str:
    """Strip what keeps a number from matching: thousands commas, "$", "million"/"billion", "(2017)"-style
    parentheticals; then single-space the text."""
    text = prediction.replace(",", "").replace("$", "").replace("million", "").replace("billion", "")
    text = re.sub(r"\((\b\w+\b)\)", "", text)
    return " ".join(text.split())


def _convfinqa_forms(gold: Any, question: str) -> list[str]:
    """Every string form of the executed answer that upstream accepts as a hit."""
    forms = [str(gold)]
    if not _is_float(gold):
        return forms
    value = float(gold)
    forms += [str(round(value, 3)), str(round(value, 2))]
    if "percent" in question:
        forms += [str(value * 100), str(round(value * 100, 1)), str(round(value * 100, 2))]
    if str(gold).endswith(".0"):
        forms.append(str(int(value)))
    return forms


def convfinqa_hit(prediction: str, exe_answer: Any, formula: str | None = None, question: str = "") -> float:
    """ConvFinQA containment: 1.0 when the cleaned output contains the executed answer in an accepted form.

    Accepted (any one suffices, exactly as upstream): ``str(exe_answer)``; the gold formula (when given); the
    answer rounded to 3 or 2 decimals; when the question mentions "percent", the answer times 100 (raw,
    rounded to 1 or 2 decimals); an integral float written without ".0"; and for a negative answer, its
    absolute value when the output says "decrease". Python's ``str``/``round`` are used on purpose: upstream
    matched their exact spellings (``0.14 * 100`` is ``14.000000000000002``, and that form counts).

    An empty ``formula`` is ignored (upstream's ``"" in text`` would make every output a hit).
    """
    text = _clean_convfinqa_output(prediction)
    if formula and str(formula) in text:
        return 1.0
    if any(form in text for form in _convfinqa_forms(exe_answer, question)):
        return 1.0
    if "decrease" in text and _is_float(exe_answer) and float(exe_answer) < 0:
        magnitude = -exe_answer if isinstance(exe_answer, int | float) else -float(exe_answer)
        return float(str(magnitude) in text)
    return 0.0


# --------------------------------------------------------------------------------------------------------
# LongEval (DachengLi1/LongChat longeval/utils.py)
# --------------------------------------------------------------------------------------------------------

# A comma-grouped number ("2,416", "12,345,678") or a plain run of digits.
_DIGITS_RE = re.compile(r"\d+")
_LINES_NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+")


def longeval_lines(prediction: str, expected_number: int, numbers: str = "official") -> float:
    """LongEval line retrieval: the *last* integer in the output equals ``expected_number``.

    ``numbers="official"`` reads numbers as upstream does (``re.findall("\\d+", output)``), so "2,416" is
    read as 416. ``numbers="grouped"`` is a named deviation (suite ``metric_kwargs``): a comma-grouped number
    (1-3 digits, then groups of exactly 3) is one number; "12, 34" or "1,23" are still two. It is recorded in
    the run's config with the suite; scores under it are not the official metric.
    """
    if numbers not in ("official", "grouped"):
        raise ValueError(f"numbers must be 'official' or 'grouped', got {numbers!r}")
    found = (_LINES_NUMBER_RE if numbers == "grouped" else _DIGITS_RE).findall(prediction)
    if not found:
        return 0.0
    return float(int(found[-1].replace(",", "")) == int(expected_number))


def _topic_normalize(text: str) -> str:
    """Lowercase, punctuation to spaces, drop articles: so "The future of AI." matches "future of ai"."""
    return chatrag_normalize(text)


def longeval_topics(prediction: str, topic: str) -> float:
    """LongEval topic retrieval: the normalised gold topic occurs, on word boundaries, in the normalised text.

    LongChat itself has no string scorer for topics: it prints "Label/Predict" lines and judges them with
    GPT-3.5 (``auto_topic_eval.py``). This deterministic stand-in accepts the exact topic regardless of case,
    punctuation and articles; paraphrases (which the GPT judge accepts) score 0, so it is a lower bound.
    """
    gold = _topic_normalize(topic)
    if not gold:
        raise ValueError("empty gold topic")
    return float(f" {gold} " in f" {_topic_normalize(prediction)} ")


# --------------------------------------------------------------------------------------------------------
# RULER (NVIDIA/RULER scripts/eval/synthetic/constants.py)
# --------------------------------------------------------------------------------------------------------

_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f]")


def _ruler_postprocess(prediction: str) -> str:
    """RULER's ``postprocess_pred``: control characters become newlines, then strip."""
    return _CONTROL_CHARS_RE.sub("\n", prediction.strip()).strip()


def ruler_substring(prediction: str, references: str | Sequence[str], mode: str = "part") -> float:
    """RULER string match: case-insensitive substring test of each reference in the output.

    ``mode="part"`` is ``string_match_part`` (QA tasks): 1.0 if *any* reference occurs. ``mode="all"`` is
    ``string_match_all`` (needle, variable tracking, word extraction): the fraction of references that occur.
    RULER rounds only the aggregated percentage, so nothing is rounded here.
    """
    refs = [str(r) for r in _as_list(references)]
    if not refs:
        raise ValueError("ruler_substring needs at least one reference")
    pred = _ruler_postprocess(prediction).lower()
    hits = [float(r.lower() in pred) for r in refs]
    if mode == "part":
        return max(hits)
    if mode == "all":
        return sum(hits) / len(hits)
    raise ValueError(f"mode must be 'part' or 'all', got {mode!r}")


# --------------------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------------------

MetricFn = Callable[..., float | None]
CHATRAG_F1_DATASETS = ("doc2dial", "quac", "qrecc", "topiocqa", "inscit", "coqa", "hybridial", "doqa_cooking",
                       "doqa_travel", "doqa_movies", "sqa", "narrativeqa")  # fmt: skip


def _infinitebench_metric(task: str) -> MetricFn:
    """A registry entry for one InfiniteBench task (extra keyword arguments are ignored)."""

    def metric(prediction: str, gold: Any, **_: Any) -> float:
        return score_infinitebench(task, prediction, gold)

    metric.__name__ = f"infinitebench_{task}"
    metric.__doc__ = f"InfiniteBench {task} (see :func:`score_infinitebench`)."
    return metric


def _chatrag_metric(dataset: str | None) -> MetricFn:
    """A registry entry for ChatRAG F1 with the rules of one dataset fixed (``dataset=`` may override)."""

    def metric(prediction: str, gold: Any, **kw: Any) -> float | None:
        return chatrag_f1(prediction, gold, dataset=kw.get("dataset", dataset))

    metric.__name__ = f"chatrag_f1_{dataset or 'plain'}"
    metric.__doc__ = f"ChatRAG token F1 with {dataset or 'no'} dataset rules (see :func:`chatrag_f1`)."
    return metric


def _convfinqa_metric(prediction: str, gold: Any, **kw: Any) -> float:
    """``gold`` is the executed answer; pass ``formula=`` and ``question=`` as keywords."""
    return convfinqa_hit(prediction, gold, formula=kw.get("formula"), question=kw.get("question", ""))


def _ruler_metric(prediction: str, gold: Any, **kw: Any) -> float:
    """RULER ``string_match_part`` by default; ``mode="all"`` selects ``string_match_all``."""
    return ruler_substring(prediction, gold, mode=kw.get("mode", "part"))


METRICS: dict[str, MetricFn] = {
    **{f"infinitebench:{task}": _infinitebench_metric(task) for task in INFINITEBENCH_TASKS},
    "chatrag:f1": _chatrag_metric(None),
    "chatrag:doqa": _chatrag_metric("doqa"),
    **{f"chatrag:{name}": _chatrag_metric(name) for name in CHATRAG_F1_DATASETS},
    "chatrag:convfinqa": _convfinqa_metric,
    "chatrag:unanswerable": lambda prediction, gold, **_: chatrag_unanswerable_correct(prediction, gold),
    "longeval:lines": lambda prediction, gold, **kw: longeval_lines(
        prediction, int(gold), kw.get("numbers", "official")
    ),
    "longeval:topics": lambda prediction, gold, **_: longeval_topics(prediction, str(gold)),
    "ruler:substring": _ruler_metric,
    "ruler:substring_all": lambda prediction, gold, **_: ruler_substring(prediction, gold, "all"),
}
"""Metric name -> scorer ``f(prediction, gold, **kw) -> float``; the names YAML eval suites may use."""


def _qa_contains(prediction: str, gold: Any, **_: Any) -> float:
    """Accepted-answer containment of our own question sets (decline when there is no accepted answer)."""
    from chatqa.evaluation.question_sets import contains_answer

    return contains_answer(prediction, gold)


METRICS["qa:contains"] = _qa_contains


def score(metric: str, prediction: str, gold: Any, **kw: Any) -> float | None:
    """Score one prediction with the metric named ``metric`` (a key of :data:`METRICS`), in ``[0, 1]``;
    ``None`` for an item the official scorer leaves out of the mean (ChatRAG: no non-empty reference)."""
    try:
        fn = METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(METRICS))}") from None
    got = fn(prediction, gold, **kw)
    return None if got is None else float(got)


def _qa_in_context(context: str, gold: Any) -> bool | None:
    """qa:contains asked of the context; a not-in-book question (no accepted answer) cannot be in it."""
    from chatqa.evaluation.question_sets import contains_answer

    golds = [str(g) for g in _as_list(gold) if g is not None and str(g).strip()]
    return bool(contains_answer(context, golds)) if golds else None


CONTEXT_CHECKS: dict[str, Callable[[str, Any], bool | None]] = {"qa:contains": _qa_in_context}
"""Metrics whose rule can also be asked of the retrieved context: containment of an accepted answer."""


def gold_in_context(metric: str, context: str, gold: Any) -> bool | None:
    """Whether the context the reader was given holds an accepted answer, by the suite's own containment rule.

    Splits a RAG miss into a retrieval miss (the answer never reached the model) and a reading miss (it was
    there and the model did not give it). ``None`` where the question cannot tell: a metric that is not
    containment (F1, ROUGE: every context "holds" part of the gold) or a question with no accepted answer."""
    check = CONTEXT_CHECKS.get(metric)
    return None if check is None else check(context, gold)
