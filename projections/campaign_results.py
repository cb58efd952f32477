"""A campaign's results: group sizes, conversion and revenue per group, uplift with 95 %
confidence (:mod:`domain.uplift`), incremental conversions and revenue, ROI, broken down by
RFM group and lifecycle stage at exposure; as of any business time.

Shape (``GET /v1/campaigns/{id}/results``)::

    {"campaign_id", "as_of", "status", "launch": {...counts}, "conversion": {definition},
     "groups": {"treatment"|"control": {"size", "conversions", "conversion_rate", "revenue",
                                         "revenue_per_customer"}},
     "uplift": {"conversion": {absolute, ci95, relative, relative_ci95, z, p_value,
                               significant},
                "revenue_per_customer": {difference, ci95, p_value, significant}},
     "engagement": {outcome: {"members", "rate"}},  (members reporting it by ``as_of``;
                                                     rate: of the treatment group)
     "incremental": {"conversions", "revenue"}, "cost", "roi",
     "breakdown": {"rfm_group"|"lifecycle_stage": {key: {"groups", "uplift"}}},
     "method": "..."}

Rates and statistics are numbers; money is a decimal string in the conversion currency.
Incremental conversions are the absolute uplift times the treatment size, incremental revenue
the revenue difference per customer times the treatment size; ROI is (incremental revenue -
cost) / cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain import uplift
from domain.campaign import CONTROL, OUTCOMES, TREATMENT
from domain.values import utc_text
from infra.read_tx import Tx
from projections.campaigns import Member, members_as_of, outcomes

METHOD = (
    "conversion: two-sided pooled two-proportion z-test, unpooled Wald 95 % interval, "
    "log risk-ratio interval for the relative uplift; revenue per customer: Welch t-test "
    "and interval (scipy.stats)"
)
CENT = Decimal("0.01")


def report(tx: Tx, campaign: dict[str, Any], as_of: datetime | None = None) -> dict[str, Any]:
    """The results of ``campaign`` (its public view, :meth:`domain.campaign.Campaign.view`)."""
    conversion = campaign["conversion"]
    members = members_as_of(tx, campaign["campaign_id"], conversion, as_of)
    whole = _compare(members)
    cost = campaign["cost"]
    incremental = None
    roi = None
    n_t = whole["groups"][TREATMENT]["size"]
    absolute = whole["uplift"]["conversion"]["absolute"]
    difference = whole["uplift"]["revenue_per_customer"]["difference"]
    if absolute is not None:
        incremental = {
            "conversions": absolute * n_t,
            "revenue": None if difference is None else _money(Decimal(repr(difference)) * n_t),
        }
        if cost is not None and Decimal(cost["amount"]) > 0 and difference is not None:
            spent = Decimal(cost["amount"])
            roi = float((Decimal(repr(difference)) * n_t - spent) / spent)
    reported = outcomes(tx, campaign["campaign_id"], as_of)
    engagement = {
        name: {
            "members": reported.get(name, 0),
            "rate": reported.get(name, 0) / n_t if n_t else None,
        }
        for name in OUTCOMES
    }
    return {
        "campaign_id": campaign["campaign_id"],
        "as_of": None if as_of is None else utc_text(as_of),
        "status": campaign["status"],
        "launch": campaign["counts"],
        "conversion": conversion,
        **whole,
        "engagement": engagement,
        "incremental": incremental,
        "cost": cost,
        "roi": roi,
        "breakdown": {
            "rfm_group": _breakdown(members, lambda m: m.rfm_group or "unscored"),
            "lifecycle_stage": _breakdown(members, lambda m: m.lifecycle_stage),
        },
        "method": METHOD,
    }


def _compare(members: Iterable[Member]) -> dict[str, Any]:
    by_group: dict[str, list[Member]] = {TREATMENT: [], CONTROL: []}
    for member in members:
        by_group[member.group].append(member)
    groups = {name: _group(found) for name, found in by_group.items()}
    t, c = groups[TREATMENT], groups[CONTROL]
    revenue = {name: [float(m.revenue) for m in found] for name, found in by_group.items()}
    return {
        "groups": groups,
        "uplift": {
            "conversion": uplift.two_proportions(
                t["conversions"], t["size"], c["conversions"], c["size"]
            ),
            "revenue_per_customer": uplift.difference_of_means(
                revenue[TREATMENT], revenue[CONTROL]
            ),
        },
    }


def _group(members: list[Member]) -> dict[str, Any]:
    size = len(members)
    conversions = sum(1 for m in members if m.converted)
    revenue = sum((m.revenue for m in members), Decimal(0))
    return {
        "size": size,
        "conversions": conversions,
        "conversion_rate": conversions / size if size else None,
        "revenue": _money(revenue),
        "revenue_per_customer": _money(revenue / size) if size else None,
    }


def _breakdown(members: list[Member], key: Callable[[Member], str]) -> dict[str, Any]:
    parts: dict[str, list[Member]] = {}
    for member in members:
        parts.setdefault(key(member), []).append(member)
    return {name: _compare(part) for name, part in sorted(parts.items())}


def _money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))
