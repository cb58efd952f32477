"""``p_alive`` on a generated base whose truth is known (issue 18, "Done when"): 6,000
customers simulated from the BG/NBD process (:mod:`tests.churn_support`, which also says who
is still alive at the end of their observation), the model fitted on their summaries, and each
customer's P(alive) under the fitted parameters compared with the truth.

Stated tolerances (observed on seeds 7, 2026 and 11: at most 0.019, 0.008 and 0.025):

* per customer, P(alive) under the fitted parameters is within **0.03** of P(alive) under the
  true ones;
* the mean P(alive) is within **0.02** of the share of customers truly alive;
* calibration: in each band of P(alive) (below 0.5, 0.5 to 0.9, 0.9 and above) the share truly
  alive is within **0.05** of the band's mean P(alive).
"""

from __future__ import annotations

from statistics import fmean

import pytest

from domain.btyd import Parameters, Summary, p_alive
from domain.btyd_fit import fit
from tests.churn_support import simulate

TRUE = Parameters(r=0.8, alpha=40.0, a=0.6, b=3.0)
BANDS = ((0.0, 0.5), (0.5, 0.9), (0.9, 1.01))


@pytest.mark.parametrize("seed", [7, 2026])
def test_p_alive_recovers_who_is_alive_on_a_simulated_base(seed: int) -> None:
    base = simulate(6000, TRUE.r, TRUE.alpha, TRUE.a, TRUE.b, seed=seed, days=(180, 720))
    summaries = [Summary(c.frequency, c.recency, c.T) for c in base]
    fitted = fit(summaries).parameters
    found = [p_alive(fitted, s) for s in summaries]
    truth = [p_alive(TRUE, s) for s in summaries]
    assert max(abs(f - t) for f, t in zip(found, truth, strict=True)) <= 0.03
    alive = [1.0 if c.alive else 0.0 for c in base]
    assert abs(fmean(found) - fmean(alive)) <= 0.02
    for low, high in BANDS:
        band = [(p, a) for p, a in zip(found, alive, strict=True) if low <= p < high]
        assert len(band) > 500, (low, high)  # every band is well populated
        share, mean = fmean(a for _, a in band), fmean(p for p, _ in band)
        assert abs(share - mean) <= 0.05, (low, high, share, mean)
