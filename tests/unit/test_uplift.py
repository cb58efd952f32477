"""The uplift statistics over many simulated experiments: the 95 % interval contains the true
uplift about 95 % of the time, an A/A comparison is significant about 5 % of the time (the
stated rate), and degenerate data gives ``None`` rather than a made-up number."""

from __future__ import annotations

import numpy as np

from domain.uplift import difference_of_means, two_proportions

RUNS = 600
N_T, N_C = 9_000, 9_000


def test_the_interval_covers_the_true_uplift_at_the_stated_rate() -> None:
    rng = np.random.default_rng(19)
    covered = 0
    for _ in range(RUNS):
        x_t, x_c = int(rng.binomial(N_T, 0.12)), int(rng.binomial(N_C, 0.08))
        low, high = two_proportions(x_t, N_T, x_c, N_C)["ci95"]
        covered += low <= 0.04 <= high
    # 95 % of 600: a binomial standard deviation is 5.3 runs; allow about four of them
    assert 0.915 <= covered / RUNS <= 0.985


def test_an_a_a_comparison_is_significant_at_the_stated_rate() -> None:
    rng = np.random.default_rng(20)
    conversion_alarms = revenue_alarms = 0
    for _ in range(RUNS):
        x_t, x_c = int(rng.binomial(N_T, 0.1)), int(rng.binomial(N_C, 0.1))
        conversion_alarms += bool(two_proportions(x_t, N_T, x_c, N_C)["significant"])
        spend_t = rng.exponential(30, 2_000) * (rng.random(2_000) < 0.1)
        spend_c = rng.exponential(30, 2_000) * (rng.random(2_000) < 0.1)
        revenue_alarms += bool(difference_of_means(list(spend_t), list(spend_c))["significant"])
    for alarms in (conversion_alarms, revenue_alarms):
        assert 0.02 <= alarms / RUNS <= 0.085  # 5 %, binomial sd 0.9 %


def test_relative_uplift_and_its_interval() -> None:
    result = two_proportions(120, 1000, 80, 1000)
    assert abs(result["relative"] - 0.5) < 1e-12
    low, high = result["relative_ci95"]
    assert low < 0.5 < high and low > 0  # significant: the ratio's interval excludes 1


def test_undefined_statistics_are_none() -> None:
    assert two_proportions(0, 0, 5, 10)["absolute"] is None
    nobody = two_proportions(0, 10, 0, 10)
    assert nobody["absolute"] == 0 and nobody["p_value"] is None and nobody["relative"] is None
    assert difference_of_means([1.0], [2.0, 3.0])["difference"] is None
    flat = difference_of_means([0.0, 0.0, 0.0], [0.0, 0.0])
    assert flat["difference"] == 0 and flat["p_value"] is None
