r"""Seed-paired comparison of two models: is the difference larger than the seed noise?

Both models are run with the same seeds, and a seed fixes the data split and the starting trunk,
so the per-seed differences $d_s = a_s - b_s$ cancel the part of the noise the two runs share. With
$k$ seeds, mean $\bar d$ and sample standard deviation $s_d$, the 95% interval of the mean
difference is $\bar d \pm t_{0.975,\,k-1}\, s_d / \sqrt k$ (the paired $t$ interval; e.g.
Wasserman, *All of Statistics*, 2004, §10.1). An interval that excludes 0 is a difference
larger than seed noise; one that contains 0 is not evidence of no difference. One seed gives a
difference but no spread: its standard deviations and interval are ``None``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Means of ``a`` and ``b``, and mean, std, 95% t-interval and sign counts of ``a - b``.

    With a single pair the standard deviations and the interval are ``None`` (one value has no spread).

    >>> r = paired_difference([0.9, 0.8, 0.85], [0.8, 0.75, 0.85])
    >>> round(r["mean"], 4), r["wins"], r["ties"], r["losses"]
    (0.05, 2, 1, 0)
    >>> paired_difference([0.9], [0.8])["ci95"] is None
    True
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples need the same length, got {len(a)} and {len(b)}")
    if len(a) < 1:
        raise ValueError("a paired comparison needs at least 1 seed, got none")
    d = [x - y for x, y in zip(a, b)]
    k = len(d)
    mean = statistics.fmean(d)
    if k == 1:
        std = std_a = std_b = ci95 = None
    else:
        from scipy.stats import t as student_t  # scipy comes with scikit-learn

        std, std_a, std_b = statistics.stdev(d), statistics.stdev(a), statistics.stdev(b)
        half = student_t.ppf(0.975, k - 1) * std / math.sqrt(k)
        ci95 = [mean - half, mean + half]
    return {
        "mean_a": statistics.fmean(a), "std_a": std_a,
        "mean_b": statistics.fmean(b), "std_b": std_b,
        "mean": mean, "std": std, "ci95": ci95,
        "wins": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d), "losses": sum(x < 0 for x in d),
    }
