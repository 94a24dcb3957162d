"""Evaluation: official benchmark scorers (see :mod:`chatqa.eval.metrics`) and evaluation helpers."""
