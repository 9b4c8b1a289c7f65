"""Paired significance over queries: is method B's per-query score different from method A's?

Both tests are scipy's, not hand-rolled: a paired randomization (sign-flip permutation) test of the
mean per-query difference (`scipy.stats.permutation_test`, permutation_type="samples") and a paired
bootstrap confidence interval of that mean (`scipy.stats.bootstrap`, paired=True). Queries are the
ones both methods were scored on; a query's score may already be a mean over seeds (pooled seeds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PairedTest:
    mean_difference: float  # mean over queries of B − A
    ci_low: float  # 95% paired bootstrap interval of that mean
    ci_high: float
    p_value: float  # two-sided paired randomization test
    queries: int

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, scale: float = 100.0) -> str:
        return (
            f"{scale * self.mean_difference:+.1f} [{scale * self.ci_low:+.1f}, {scale * self.ci_high:+.1f}], "
            f"p = {self.p_value:.3g} ({self.queries} queries)"
        )


def paired_test(a: Mapping[str, float], b: Mapping[str, float], resamples: int = 10_000, seed: int = 0) -> PairedTest:
    """Compare per-query scores `b` against `a` over the queries both have."""
    from scipy import stats

    queries = sorted(set(a) & set(b))
    if len(queries) < 2:
        raise ValueError(f"a paired test needs at least 2 common queries, got {len(queries)}")
    x = np.array([a[q] for q in queries], dtype=np.float64)
    y = np.array([b[q] for q in queries], dtype=np.float64)
    diff = y - x
    if not np.any(diff):
        return PairedTest(0.0, 0.0, 0.0, 1.0, len(queries))

    def mean_difference(first, second, axis=-1):
        return np.mean(second - first, axis=axis)

    rng = np.random.default_rng(seed)
    test = stats.permutation_test(
        (x, y), mean_difference, permutation_type="samples", n_resamples=resamples, vectorized=True, rng=rng
    )
    interval = stats.bootstrap(
        (x, y), mean_difference, paired=True, n_resamples=resamples, vectorized=True, rng=rng, method="percentile"
    ).confidence_interval
    return PairedTest(float(diff.mean()), float(interval.low), float(interval.high), float(test.pvalue), len(queries))


def pooled(per_seed: list[Mapping[str, float]]) -> dict[str, float]:
    """Per-query mean over seeds (queries scored in every seed)."""
    common = set(per_seed[0]).intersection(*per_seed[1:]) if per_seed else set()
    return {q: float(np.mean([run[q] for run in per_seed])) for q in sorted(common)}
