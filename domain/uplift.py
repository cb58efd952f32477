"""Uplift of a campaign over its holdout control group, with 95 % confidence (issue 19).

Methods (textbook, as statsmodels and R's ``prop.test``/``t.test`` compute them; the
distributions come from scipy, the ``models`` extra):

* **conversion** (a two-proportion comparison): the absolute uplift ``p_t - p_c`` with the
  unpooled Wald interval ``± z * sqrt(p_t(1-p_t)/n_t + p_c(1-p_c)/n_c)``; the p-value of the
  two-sided pooled z-test (``z = (p_t - p_c) / sqrt(p(1-p)(1/n_t + 1/n_c))``, ``p`` the pooled
  rate); the relative uplift ``p_t/p_c - 1`` with the log risk-ratio interval
  ``exp(log(p_t/p_c) ± z * sqrt(1/x_t - 1/n_t + 1/x_c - 1/n_c)) - 1``;
* **revenue per customer** (a difference of means): Welch's t-test (unequal variances) and
  its interval (``scipy.stats.ttest_ind(..., equal_var=False)``).

A statistic that is undefined for the data (an empty group, no conversions in a group for the
relative interval, no variance) is ``None``, never a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from domain.errors import DomainError

LEVEL = 0.95


class StatisticsExtraMissing(DomainError):
    """scipy is not installed (``pip install 'clientele[models]'``): 501."""

    code = "models-extra-missing"


def _stats() -> Any:
    try:
        from scipy import stats  # noqa: PLC0415 - the models extra, loaded when used
    except ImportError:  # pragma: no cover - the test environment has it
        raise StatisticsExtraMissing(
            "campaign results need scipy: pip install 'clientele[models]'"
        ) from None
    return stats


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def two_proportions(x_t: int, n_t: int, x_c: int, n_c: int) -> dict[str, Any]:
    """``{absolute, ci95, relative, relative_ci95, z, p_value, significant}`` for ``x_t`` of
    ``n_t`` treatment and ``x_c`` of ``n_c`` control members converting."""
    empty: dict[str, Any] = {
        "absolute": None,
        "ci95": None,
        "relative": None,
        "relative_ci95": None,
        "z": None,
        "p_value": None,
        "significant": None,
    }
    if n_t == 0 or n_c == 0:
        return empty
    norm = _stats().norm
    z_crit = float(norm.ppf(0.5 + LEVEL / 2))
    p_t, p_c = x_t / n_t, x_c / n_c
    diff = p_t - p_c
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    pooled = (x_t + x_c) / (n_t + n_c)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    result = {**empty, "absolute": diff, "ci95": [diff - z_crit * se, diff + z_crit * se]}
    if se_pooled > 0:
        z = diff / se_pooled
        p_value = float(2 * norm.sf(abs(z)))
        result |= {"z": z, "p_value": p_value, "significant": p_value < 1 - LEVEL}
    if x_t > 0 and x_c > 0:
        ratio = p_t / p_c
        se_log = math.sqrt(1 / x_t - 1 / n_t + 1 / x_c - 1 / n_c)
        result["relative"] = ratio - 1
        result["relative_ci95"] = [
            math.exp(math.log(ratio) - z_crit * se_log) - 1,
            math.exp(math.log(ratio) + z_crit * se_log) - 1,
        ]
    return result


def difference_of_means(treatment: Sequence[float], control: Sequence[float]) -> dict[str, Any]:
    """``{difference, ci95, p_value, significant}`` of the treatment mean over the control
    mean (Welch)."""
    result: dict[str, Any] = {
        "difference": None,
        "ci95": None,
        "p_value": None,
        "significant": None,
    }
    if len(treatment) < 2 or len(control) < 2:
        return result
    test = _stats().ttest_ind(treatment, control, equal_var=False)
    difference = sum(treatment) / len(treatment) - sum(control) / len(control)
    result["difference"] = difference
    p_value = _finite(float(test.pvalue))
    if p_value is not None:
        interval = test.confidence_interval(LEVEL)
        result |= {
            "ci95": [float(interval.low), float(interval.high)],
            "p_value": p_value,
            "significant": p_value < 1 - LEVEL,
        }
    return result
