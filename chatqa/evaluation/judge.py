"""LongEval topics' official scorer: an LLM judge that accepts paraphrases (LongChat ``auto_topic_eval.py``).

The default topics score is normalised containment, a lower bound of this judge. ``--judge PROFILE`` asks any
configured generator the official question (same wording, one user message, "1" means correct) and records
its verdict beside the containment score. Upstream used GPT-3.5 at temperature 0.2; we decode greedily, so a
judged score is labelled with the judge profile, and is only comparable with runs judged by the same model.
"""

from __future__ import annotations

from typing import Any

JUDGE_PROMPT = (
    "I am testing whether a LLM model can correctly retreieve the first topic, and would like you to help me "
    "judge whether the mode ls correct. Please give me 1 for correct and 0 for incorrect. Only give me a single "
    "number. Ignore mistakes if the model is paraphasing or using synonyms. Ignore any simple mistakes such as "
    "capitalization and punctuation. The ground truth is {label}, the model prediction is {predict}"
)  # verbatim, typos included: the judge's input is part of the metric
JUDGE_MAX_NEW_TOKENS = 5


def judge_prompt(label: str, prediction: str) -> str:
    """The official judge input; upstream flattens newlines of the prediction into spaces first. (Upstream
    also parses label and prediction back out of its log line, which cuts both at their first comma; we
    pass them whole.)"""
    return JUDGE_PROMPT.replace("{label}", label, 1).replace("{predict}", " ".join(prediction.split()), 1)


def verdict(text: str) -> float:
    """Upstream counts a judgement as correct only when the reply is exactly "1" (we strip whitespace)."""
    return float(text.strip() == "1")


class TopicJudge:
    """Judges topic answers with a generator of its own (the judge profile), through its chat template
    when it has one (the official judge is a chat model), else as a completion."""

    def __init__(self, generator: Any, prompt_format: str, profile: str) -> None:
        self.generator, self.prompt_format, self.profile = generator, prompt_format, profile

    @classmethod
    def from_profile(cls, profile: str) -> TopicJudge:
        from chatqa.config import load_profile
        from chatqa.generation import load_generator

        config = load_profile(profile)
        return cls(load_generator(config.generator), config.generator.prompt_format, config.name)

    def __call__(self, label: str, prediction: str) -> float:
        from chatqa.evaluation.templates import wrap_prompt

        render = self.generator.render_chat if self.prompt_format == "chat" else None
        prompt = wrap_prompt(judge_prompt(label, prediction), self.prompt_format, render)
        return verdict(self.generator.generate(prompt, JUDGE_MAX_NEW_TOKENS).text)
