"""Uncertainty for small eval cells: Wilson/bootstrap intervals and paired mode-vs-mode differences.

Cells here hold 2-50 items, so a 10-point gap is often one item. Every score therefore carries a 95% interval,
and modes are compared *paired*, on the samples where both ran (same question, same document), which removes
the between-sample variance that an unpaired comparison would drown in. Seeded, so reports rebuild identically.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_ci(values: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:  # fmt: skip
    """Percentile bootstrap interval of the mean; ``None`` for no values. One value (or all equal) gives a
    zero-width interval: the bootstrap cannot see variance a single item does not show."""
    items = list(values)
    if not items:
        return None
    n = len(items)
    rng = random.Random(seed)
    means = sorted(sum(items[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1.0 - level) / 2
    lo = means[int(tail * resamples)]
    hi = means[min(resamples - 1, int((1.0 - tail) * resamples))]
    return lo, hi


def score_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """95% interval of a cell's mean score (values in percent): Wilson's score interval when every value is 0
    or 100 (a proportion: it stays honest at n of 2-10, where a bootstrap of ten 100s would claim [100, 100]),
    the percentile bootstrap otherwise (F1, ROUGE)."""
    items = list(values)
    if not items:
        return None
    if all(v in (0.0, 100.0) for v in items):
        from chatqa.evaluation.question_sets import wilson_interval

        lo, hi = wilson_interval(sum(v == 100.0 for v in items), len(items))
        return 100 * lo, 100 * hi
    return bootstrap_ci(items)


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict[str, object] | None:
    """Mean of ``a - b`` over the samples both have, its 95% bootstrap interval, and whether that interval
    holds 0 (the difference is inside the noise). Values are per-sample scores in percent."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [a[k] - b[k] for k in common]
    mean = sum(diffs) / len(diffs)
    lo, hi = bootstrap_ci(diffs) or (mean, mean)
    return {"n": len(common), "diff": round(mean, 2), "ci95": [round(lo, 2), round(hi, 2)],
            "inside_noise": lo <= 0.0 <= hi, "wins": sum(d > 0 for d in diffs),
            "losses": sum(d < 0 for d in diffs)}  # fmt: skip
