"""Statistics for the load test: chi-square test of evenness, percentiles.

scipy is not a dependency, so the chi-square survival function is computed
here from the regularized upper incomplete gamma function
``Q(a, x) = Γ(a, x) / Γ(a)``: ``P(X ≥ x) = Q(k/2, x/2)`` for a chi-square
variable with ``k`` degrees of freedom.  ``Q`` is evaluated as in Numerical
Recipes (section 6.2): by the series of ``P = 1 - Q`` when ``x < a + 1``, by
Lentz's continued fraction otherwise; both converge fast in their regions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

__all__ = [
    "chi_square_evenness",
    "chi_square_sf",
    "percentile",
    "regularized_gamma_q",
]

_EPSILON: Final = 1e-15
_TINY: Final = 1e-300
_MAX_ITERATIONS: Final = 100_000

_PERCENT: Final = 100.0


def _log_prefactor(a: float, x: float) -> float:
    """``log(x**a * exp(-x) / Γ(a))``, the factor common to series and fraction."""
    return a * math.log(x) - x - math.lgamma(a)


def _lower_series(a: float, x: float) -> float:
    """``P(a, x)`` by its series (converges quickly for ``x < a + 1``)."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPSILON:
            return total * math.exp(_log_prefactor(a, x))
    raise ArithmeticError(f"incomplete gamma series did not converge for a={a}, x={x}")


def _upper_fraction(a: float, x: float) -> float:
    """``Q(a, x)`` by its continued fraction (modified Lentz; ``x ≥ a + 1``)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPSILON:
            return h * math.exp(_log_prefactor(a, x))
    raise ArithmeticError(f"incomplete gamma fraction did not converge for a={a}, x={x}")


def regularized_gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function ``Q(a, x)``, for a > 0, x ≥ 0."""
    if not a > 0:
        raise ValueError(f"a must be positive, got {a}")
    if not x >= 0:
        raise ValueError(f"x must be non-negative, got {x}")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        return min(1.0, max(0.0, 1.0 - _lower_series(a, x)))
    return min(1.0, max(0.0, _upper_fraction(a, x)))


def chi_square_sf(statistic: float, dof: int) -> float:
    """``P(X ≥ statistic)`` for X chi-square distributed with ``dof`` degrees of freedom.

    ``dof`` 0 (a single category) has no test: the answer is 1.0.
    """
    if dof < 0:
        raise ValueError(f"degrees of freedom must be non-negative, got {dof}")
    if statistic < 0:
        raise ValueError(f"a chi-square statistic is non-negative, got {statistic}")
    if dof == 0:
        return 1.0
    return regularized_gamma_q(dof / 2.0, statistic / 2.0)


def chi_square_evenness(counts: Sequence[int]) -> tuple[float, int, float]:
    """Pearson's test that ``counts`` come from equally likely categories.

    Returns ``(statistic, degrees of freedom, p-value)``.  Fewer than two
    categories, or no observation at all, give ``(0.0, 0, 1.0)``.
    """
    total = sum(counts)
    k = len(counts)
    if k <= 1 or total == 0:
        return 0.0, 0, 1.0
    expected = total / k
    statistic = sum((c - expected) ** 2 for c in counts) / expected
    return statistic, k - 1, chi_square_sf(statistic, k - 1)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of the sorted ``ordered``, interpolated
    linearly between closest ranks; NaN when ``ordered`` is empty."""
    if not ordered:
        return math.nan
    if not 0 <= q <= _PERCENT:
        raise ValueError(f"percentile must be in 0..100, got {q}")
    rank = (len(ordered) - 1) * q / _PERCENT
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
